import assert from "node:assert/strict";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService } from "../../../src/gen/agent_pb.js";
import { processSpec, readAll, rejectsWith, startSandbox, type SandboxFixture } from "./harness.js";

describe("guest agent: terminals", function () {
  let fx: SandboxFixture;

  beforeEach(async () => {
    fx = await startSandbox();
  });

  afterEach(async function () {
    await fx.stop(this.currentTest?.state === "failed");
  });

  it("gives an exec'd process a terminal it controls, sized, resizable, with output on stdout", async () => {
    await fx.createContainer("term", ["sleep", "1000"]);
    await unary(fx.client, AgentService.method.startContainer, { containerId: "term" });
    await unary(fx.client, AgentService.method.execProcess, {
      containerId: "term",
      execId: "shell",
      process: processSpec(["sh", "-c", "tty; stty size; echo ctty >/dev/tty; read x; stty size"], { terminal: true, rows: 24, columns: 80 }),
    });
    const first = await readAll(fx.client, "stdout", "term", "shell", (t) => t.includes("ctty"));
    assert.match(first, /^\/dev\/pts\/\d+\r\n/, "tty names a terminal device of the container");
    assert.match(first, /24 80\r\n/, "the initial console size");
    assert.match(first, /ctty/, "/dev/tty opens: the terminal is the controlling one");
    await unary(fx.client, AgentService.method.ttyWinResize, { containerId: "term", execId: "shell", row: 40, column: 100 });
    await unary(fx.client, AgentService.method.writeStdin, { containerId: "term", execId: "shell", data: Buffer.from("\n") });
    const rest = await readAll(fx.client, "stdout", "term", "shell");
    assert.match(rest, /40 100\r\n/, "stty size after the resize");
    assert.equal((await unary(fx.client, AgentService.method.readStderr, { containerId: "term", execId: "shell", len: 100 })).data.length, 0, "a terminal has no separate stderr");
    assert.equal((await unary(fx.client, AgentService.method.waitProcess, { containerId: "term", execId: "shell" })).status, 0);

    await unary(fx.client, AgentService.method.execProcess, { containerId: "term", execId: "plain", process: processSpec(["sleep", "1000"]) });
    await rejectsWith(unary(fx.client, AgentService.method.ttyWinResize, { containerId: "term", execId: "plain", row: 1, column: 1 }), "FailedPrecondition");
    await unary(fx.client, AgentService.method.removeContainer, { containerId: "term", timeout: 0 });
  });

  it("gives an exec's terminal the process's console size as it starts", async () => {
    await fx.createContainer("sized", ["sleep", "1000"]);
    await unary(fx.client, AgentService.method.startContainer, { containerId: "sized" });
    // The host makes an exec with the client's first size: the command sees it, not 0x0.
    for (let i = 0; i < 3; i++) {
      const execId = `size-${i}`;
      // crun 1.8.1 may run the process a moment before the size lands on the terminal; the
      // agent sets it as soon as it has the terminal, so a command that waits a little sees it.
      await unary(fx.client, AgentService.method.execProcess, { containerId: "sized", execId, process: processSpec(["sh", "-c", "sleep 0.2; stty size"], { terminal: true, rows: 33, columns: 101 }) });
      assert.equal(await readAll(fx.client, "stdout", "sized", execId), "33 101\r\n");
      assert.equal((await unary(fx.client, AgentService.method.waitProcess, { containerId: "sized", execId })).status, 0);
    }
    await unary(fx.client, AgentService.method.removeContainer, { containerId: "sized", timeout: 0 });
  });

  it("gives a container's first process a terminal, and ends its input with ^D on CloseStdin", async () => {
    await fx.createContainer("term-init", ["sh", "-c", "tty; cat; echo eof"], { terminal: true });
    await unary(fx.client, AgentService.method.startContainer, { containerId: "term-init" });
    assert.match(await readAll(fx.client, "stdout", "term-init", "", (t) => t.includes("\n")), /^\/dev\/pts\/\d+\r\n/);
    await unary(fx.client, AgentService.method.writeStdin, { containerId: "term-init", execId: "", data: Buffer.from("typed\n") });
    await unary(fx.client, AgentService.method.closeStdin, { containerId: "term-init", execId: "" });
    const rest = await readAll(fx.client, "stdout", "term-init", "");
    assert.match(rest, /typed\r\n/);
    assert.match(rest, /eof\r\n$/);
    assert.equal((await unary(fx.client, AgentService.method.waitProcess, { containerId: "term-init", execId: "" })).status, 0);
    await unary(fx.client, AgentService.method.removeContainer, { containerId: "term-init", timeout: 0 });
  });
});
