/**
 * The installer's command line, where it stops before touching a host: no
 * command, an unknown one, a bad timeout, no node name for the cluster.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { findRepoRoot } from "../../../src/common/fs.js";

async function installer(args: string[]): Promise<{ code: number; stderr: string }> {
  const repo = await findRepoRoot(import.meta.dirname);
  return promisify(execFile)(process.execPath, ["--import", "tsx", join(repo, "src/installer/main.ts"), ...args], { cwd: repo }).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (e: { code: number; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
  );
}

describe("installer: command line", function () {
  this.timeout(60_000);

  it("prints its usage and exits 2 without a command or with an unknown one", async () => {
    for (const args of [[], ["reinstall"]]) {
      const r = await installer(args);
      assert.equal(r.code, 2, args.join(" "));
      assert.match(r.stderr, /^usage: main\.js install\|uninstall /);
    }
  });

  it("refuses a bad ready timeout, and a cluster install without the node's name", async () => {
    const timeout = await installer(["install", "--host-root=/nonexistent", "--no-kube", "--ready-timeout=soon"]);
    assert.equal(timeout.code, 1);
    assert.match(timeout.stderr, /--ready-timeout soon is not a positive number of seconds/);
    const noNode = await installer(["uninstall", "--host-root=/nonexistent"]);
    assert.equal(noNode.code, 1);
    assert.match(noNode.stderr, /--node-name is needed/);
  });
});
