import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService } from "../../../src/gen/agent_pb.js";
import { processSpec, readAll, rejectsWith, startSandbox, stillPending, type SandboxFixture } from "./harness.js";

describe("guest agent: containers", function () {
  let fx: SandboxFixture;

  beforeEach(async () => {
    fx = await startSandbox();
  });

  afterEach(async function () {
    await fx.stop(this.currentTest?.state === "failed");
  });

  const call = {
    start: (containerId: string) => unary(fx.client, AgentService.method.startContainer, { containerId }),
    wait: async (containerId: string, execId = "") => (await unary(fx.client, AgentService.method.waitProcess, { containerId, execId })).status,
    exec: (containerId: string, execId: string, args: string[], options: { terminal?: boolean; rows?: number; columns?: number } = {}) =>
      unary(fx.client, AgentService.method.execProcess, { containerId, execId, process: processSpec(args, options) }),
    signal: (containerId: string, execId: string, signal: number) => unary(fx.client, AgentService.method.signalProcess, { containerId, execId, signal }),
    remove: (containerId: string, timeout = 0) => unary(fx.client, AgentService.method.removeContainer, { containerId, timeout }),
    write: async (containerId: string, execId: string, text: string) =>
      (await unary(fx.client, AgentService.method.writeStdin, { containerId, execId, data: Buffer.from(text) })).len,
    read: (containerId: string, execId: string, len = 65536) => unary(fx.client, AgentService.method.readStdout, { containerId, execId, len }),
  };

  it("runs a container whose output reaches ReadStdout, then reports its exit status, twice", async () => {
    await fx.createContainer("echo", ["sh", "-c", "echo hello; hostname; cat /etc/resolv.conf >/dev/null 2>&1; echo oops >&2"]);
    await call.start("echo");
    assert.equal(await readAll(fx.client, "stdout", "echo", ""), "hello\npod-1\n", "hostname is the sandbox's");
    assert.equal(await readAll(fx.client, "stderr", "echo", ""), "oops\n");
    assert.equal(await call.wait("echo"), 0);
    assert.equal(await call.wait("echo", "echo"), 0, "the container id names the first process too");
    assert.equal((await call.read("echo", "")).data.length, 0, "end of stream stays");
    assert.equal(await readFile(`${fx.agent.dir}/resolv.conf`, "utf8"), "nameserver 10.0.0.1\nsearch example.test\n");
    assert.equal(await readFile(`${fx.agent.dir}/hostname`, "utf8"), "pod-1\n");
    await call.remove("echo");
  });

  it("reports a failing command's exit code, and 128 + signal for a killed one", async () => {
    await fx.createContainer("fails", ["sh", "-c", "exit 7"]);
    await call.start("fails");
    assert.equal(await call.wait("fails"), 7);
    await call.remove("fails");

    await fx.createContainer("sleeper", ["sleep", "1000"], { execId: "first" });
    await call.start("sleeper");
    await call.signal("sleeper", "first", 9);
    assert.equal(await call.wait("sleeper", "first"), 128 + 9);
    await call.remove("sleeper");
  });

  it("execs processes into a running container, each with its own streams and status", async () => {
    await fx.createContainer("box", ["sleep", "1000"]);
    await rejectsWith(call.exec("box", "e0", ["true"]), "FailedPrecondition", /created/);
    await call.start("box");
    await call.exec("box", "sum", ["sh", "-c", "echo $((1 + 2)); echo err >&2; exit 4"]);
    assert.equal(await readAll(fx.client, "stdout", "box", "sum"), "3\n");
    assert.equal(await readAll(fx.client, "stderr", "box", "sum"), "err\n");
    assert.equal(await call.wait("box", "sum"), 4);
    assert.equal(await call.wait("box", "sum"), 4, "a second wait gives the same status");
    await rejectsWith(call.exec("box", "sum", ["true"]), "AlreadyExists");

    await call.exec("box", "long", ["sleep", "1000"]);
    await call.signal("box", "long", 15);
    assert.equal(await call.wait("box", "long"), 128 + 15, "the signal reached the process itself, not crun");
    await call.signal("box", "long", 9); // an exited process: nothing to do, no error

    await call.exec("box", "cat", ["cat"]);
    assert.equal(await call.write("box", "cat", "abc"), 3);
    await unary(fx.client, AgentService.method.closeStdin, { containerId: "box", execId: "cat" });
    assert.equal(await readAll(fx.client, "stdout", "box", "cat"), "abc");
    assert.equal(await call.wait("box", "cat"), 0);

    await rejectsWith(call.exec("box", "missing", ["no-such-program"]), "Internal", /no-such-program/);
    await rejectsWith(call.wait("box", "missing"), "NotFound");
    await call.remove("box");
  });

  it("keeps an idle read open until output comes, for as long as it takes", async () => {
    await fx.createContainer("idle", ["sleep", "1000"]);
    await call.start("idle");
    await call.exec("idle", "reader", ["sh", "-c", "read line; echo got $line"]);
    const pending = call.read("idle", "reader");
    assert.ok(await stillPending(pending, 1500), "the read waits: there is no server-side timeout");
    await call.write("idle", "reader", "ping\n");
    assert.equal(Buffer.from((await pending).data).toString(), "got ping\n");
    assert.equal(await call.wait("idle", "reader"), 0);
    await call.remove("idle");
  });

  it("holds a writer back when nobody reads, and loses nothing", async () => {
    const size = 3 * 1024 * 1024;
    await fx.createContainer("flood", ["sleep", "1000"]);
    await call.start("flood");
    await call.exec("flood", "writer", ["sh", "-c", `head -c ${size} /dev/zero; echo written >&2`]);
    const stderr = readAll(fx.client, "stderr", "flood", "writer");
    assert.ok(await stillPending(stderr, 1500), "the writer is blocked while its output is not read");
    let total = 0;
    for (;;) {
      const r = await call.read("flood", "writer", 256 * 1024);
      if (r.data.length === 0) break;
      assert.ok(r.data.every((b) => b === 0));
      total += r.data.length;
    }
    assert.equal(total, size);
    assert.equal(await stderr, "written\n");
    assert.equal(await call.wait("flood", "writer"), 0);
    await call.remove("flood");
  });

  it("answers a wait even when a daemon the process left behind keeps its output open", async () => {
    await fx.createContainer("daemon", ["sleep", "1000"]);
    await call.start("daemon");
    await call.exec("daemon", "spawner", ["sh", "-c", "sleep 1000 & echo started"]);
    assert.equal(await call.wait("daemon", "spawner"), 0);
    assert.equal(Buffer.from((await call.read("daemon", "spawner")).data).toString(), "started\n");
    await call.remove("daemon");
  });

  it("removes a running container, killing what remains", async () => {
    await fx.createContainer("doomed", ["sleep", "1000"]);
    await call.start("doomed");
    await call.exec("doomed", "also", ["sleep", "1000"]);
    await call.remove("doomed", 5);
    await rejectsWith(call.wait("doomed"), "NotFound");
    await rejectsWith(call.remove("doomed"), "NotFound");
  });

  it("removes a container that was created but never started", async () => {
    await fx.createContainer("unstarted", ["sleep", "1000"]);
    await call.remove("unstarted");
  });

  it("reaps orphans re-parented to it", async () => {
    // No PID namespace: the background sleep is orphaned to the agent, the subreaper.
    await fx.createContainer("orphans", ["sleep", "1000"], { pidNamespace: false });
    await call.start("orphans");
    await call.exec("orphans", "forker", ["sh", "-c", "sleep 0.2 & echo $!"]);
    const pid = Number((await readAll(fx.client, "stdout", "orphans", "forker")).trim());
    assert.ok(pid > 0);
    assert.equal(await call.wait("orphans", "forker"), 0);
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      const stat = await readFile(`/proc/${pid}/stat`, "utf8").catch(() => "");
      gone = stat === "";
      if (!gone) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(gone, `orphan ${pid} was not reaped`);
    await call.remove("orphans");
  });

  it("reports cgroup statistics and applies resource updates", async () => {
    await fx.createContainer("stats", ["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"]);
    await call.start("stats");
    await call.exec("stats", "probe", ["true"]);
    await call.wait("stats", "probe");
    const stats = (await unary(fx.client, AgentService.method.statsContainer, { containerId: "stats" })).cgroupStats;
    assert.ok((stats?.cpuStats?.cpuUsage?.totalUsage ?? 0n) > 0n, "cpu.stat usage_usec, in nanoseconds");
    const controllers = (await readFile("/sys/fs/cgroup/unified/cgroup.controllers", "utf8")).trim().split(/\s+/);
    if (!controllers.includes("memory") || !controllers.includes("pids")) {
      console.log(`      (this host leaves only [${controllers.join(" ")}] to cgroup v2: memory and pids statistics read as 0 here,`);
      console.log("       memory/cpu/pids updates and OOM events cannot be tried; the guest has all controllers)");
      await rejectsWith(
        unary(fx.client, AgentService.method.updateContainer, { containerId: "stats", resources: { Pids: { Limit: 100n } } }),
        "Internal",
        /crun update/,
      );
    } else {
      await unary(fx.client, AgentService.method.updateContainer, { containerId: "stats", resources: { Pids: { Limit: 100n }, Memory: { Limit: 64n << 20n } } });
      const after = (await unary(fx.client, AgentService.method.statsContainer, { containerId: "stats" })).cgroupStats;
      assert.equal(after?.pidsStats?.limit, 100n);
      assert.equal(after?.memoryStats?.usage?.limit, 64n << 20n);
    }
    await unary(fx.client, AgentService.method.updateContainer, { containerId: "stats", resources: {} });
    await call.remove("stats");
  });
});
