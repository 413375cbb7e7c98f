import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { processPluginExec } from "../../../src/network/cni-exec.js";

describe("running plugin binaries", () => {
  let dir: string;

  const script = async (name: string, body: string, mode = 0o755) => {
    const path = join(dir, "bin", name);
    await writeFile(path, `#!/bin/sh\n${body}\n`);
    await chmod(path, mode);
    return path;
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-cniexec-"));
    await mkdir(join(dir, "bin"));
    await mkdir(join(dir, "other"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("finds a plugin in the first directory that has it as an executable file", async () => {
    await script("bridge", "exit 0");
    await script("notexec", "exit 0", 0o644);
    await mkdir(join(dir, "other", "bridge2"));
    await writeFile(join(dir, "other", "portmap"), "#!/bin/sh\n", { mode: 0o755 });
    assert.equal(await processPluginExec.find("bridge", [join(dir, "other"), join(dir, "bin")]), join(dir, "bin", "bridge"));
    assert.equal(await processPluginExec.find("portmap", [join(dir, "other"), join(dir, "bin")]), join(dir, "other", "portmap"));
    assert.equal(await processPluginExec.find("notexec", [join(dir, "bin")]), undefined);
    assert.equal(await processPluginExec.find("bridge2", [join(dir, "other")]), undefined);
    assert.equal(await processPluginExec.find("bridge", [join(dir, "missing")]), undefined);
  });

  it("gives the plugin its configuration on stdin and only the CNI environment with a PATH", async () => {
    const path = await script("echo", 'cat; echo "|$CNI_COMMAND|$CNI_NETNS|$HOME|"; command -v ip >/dev/null && echo ip-found');
    const out = await processPluginExec.exec({ type: "echo", path, env: { CNI_COMMAND: "ADD", CNI_NETNS: "/run/netns/x" }, stdin: '{"a":1}', timeoutMs: 5000 });
    assert.equal(out.exitCode, 0);
    assert.equal(out.stdout, '{"a":1}|ADD|/run/netns/x||\nip-found\n');
  });

  it("returns the output of a plugin that fails, for its error object to be read", async () => {
    const path = await script("fail", `echo '{"cniVersion":"1.0.0","code":7,"msg":"bad"}'; echo oops >&2; exit 1`);
    const out = await processPluginExec.exec({ type: "fail", path, env: { CNI_COMMAND: "ADD" }, stdin: "{}", timeoutMs: 5000 });
    assert.deepEqual(out, { exitCode: 1, stdout: '{"cniVersion":"1.0.0","code":7,"msg":"bad"}\n', stderr: "oops\n" });
  });

  it("kills a plugin that outlives its deadline: DeadlineExceeded naming it", async () => {
    const path = await script("hang", "exec sleep 30");
    const started = Date.now();
    await assert.rejects(
      processPluginExec.exec({ type: "hang", path, env: { CNI_COMMAND: "DEL" }, stdin: "{}", timeoutMs: 300 }),
      (err: unknown) => err instanceof VmpodError && err.kind === "DeadlineExceeded" && err.message === "CNI plugin hang DEL: no answer within 0.3 s",
    );
    assert.ok(Date.now() - started < 5000);
  });

  it("stops a plugin when the caller cancels: Canceled", async () => {
    const path = await script("hang", "exec sleep 30");
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await assert.rejects(processPluginExec.exec({ type: "hang", path, env: { CNI_COMMAND: "ADD" }, stdin: "{}", timeoutMs: 10_000, signal: ac.signal }), (err: unknown) => err instanceof VmpodError && err.kind === "Canceled");
    await assert.rejects(processPluginExec.exec({ type: "hang", path, env: { CNI_COMMAND: "ADD" }, stdin: "{}", timeoutMs: 10_000, signal: ac.signal }), (err: unknown) => err instanceof VmpodError && err.kind === "Canceled");
  });

  it("says FailedPrecondition for a plugin that cannot be run", async () => {
    await assert.rejects(processPluginExec.exec({ type: "gone", path: join(dir, "bin", "gone"), env: { CNI_COMMAND: "ADD" }, stdin: "{}", timeoutMs: 1000 }), (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition");
  });
});
