/**
 * The template store's clean-up after a dead daemon: the unfinished builds
 * it left (work directories named by its pid) lose their processes and
 * their directories; the builds of live daemons and finished templates stay.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { processesMentioning } from "../../../src/common/processes.js";
import { TemplateStore } from "../../../src/sandbox/template-store.js";

/** The pid of a process that has exited (and been reaped). */
async function deadPid(): Promise<number> {
  const child = spawn("true");
  await new Promise((resolve) => child.on("exit", resolve));
  assert.ok(child.pid);
  return child.pid;
}

describe("vm template store", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-templates-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("kills the processes of a dead daemon's unfinished builds and removes their directories, keeping live builds and templates", async () => {
    const dead = join(dir, `0123456789abcdef.tmp-${await deadPid()}-0a0b0c0d`);
    const live = join(dir, `0123456789abcdef.tmp-${process.pid}-01020304`);
    const template = join(dir, "fedcba9876543210");
    for (const d of [join(dead, "vm"), live, template]) await mkdir(d, { recursive: true });
    // Stands for the template VM: its work directory is on its command line.
    const vm = spawn("sh", ["-c", "sleep 600", join(dead, "vm", "qmp.sock")], { stdio: "ignore" });
    const exited = new Promise((resolve) => vm.on("exit", (_code, signal) => resolve(signal)));
    try {
      assert.equal((await processesMentioning(dead)).length, 1);
      const store = new TemplateStore({
        dir,
        newHypervisor: () => {
          throw new VmpodError("Unimplemented", "no vm in this test");
        },
        agentDialTimeoutMs: 1000,
        agentCallTimeoutMs: 1000,
        logger: silentLogger,
      });
      await store.cleanupLeftovers();
      assert.equal(await exited, "SIGKILL");
      assert.deepEqual((await readdir(dir)).sort(), [live, template].map((p) => p.slice(dir.length + 1)).sort());
      await store.cleanupLeftovers();
      await store.close();
    } finally {
      vm.kill("SIGKILL");
    }
  });

  it("finds nothing to do in a template path that does not exist yet", async () => {
    const store = new TemplateStore({
      dir: join(dir, "absent"),
      newHypervisor: () => {
        throw new VmpodError("Unimplemented", "no vm in this test");
      },
      agentDialTimeoutMs: 1000,
      agentCallTimeoutMs: 1000,
      logger: silentLogger,
    });
    await store.cleanupLeftovers();
    assert.deepEqual(await readdir(dir), []);
  });
});
