import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService, PortForward } from "../../../src/gen/agent_pb.js";
import { readAll, rejectsWith, startSandbox, type SandboxFixture } from "./harness.js";

describe("guest agent: port forwarding", function () {
  let fx: SandboxFixture;

  beforeEach(async () => {
    fx = await startSandbox();
  });

  afterEach(async function () {
    await fx.stop(this.currentTest?.state === "failed");
  });

  /** Opens a connection, retrying while the server in the container is not listening yet. */
  async function openWhenListening(port: number): Promise<string> {
    for (let i = 0; ; i++) {
      try {
        return (await unary(fx.client, PortForward.method.openPort, { port })).connectionId;
      } catch (err) {
        if (!(err instanceof VmpodError && err.kind === "Unavailable") || i >= 100) throw err;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  async function readPortToEnd(connectionId: string): Promise<string> {
    let text = "";
    for (;;) {
      const r = await unary(fx.client, PortForward.method.readPort, { connectionId, len: 4096 });
      if (r.data.length === 0) return text;
      text += Buffer.from(r.data).toString();
    }
  }

  it("carries an HTTP exchange with a server in a container", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    await rejectsWith(unary(fx.client, PortForward.method.openPort, { port }), "Unavailable", /ECONNREFUSED/);
    const rootfs = await fx.createContainer("web", ["httpd", "-f", "-p", `127.0.0.1:${port}`, "-h", "/www"]);
    await writeFile(join(rootfs, "www/index.html"), "<p>hello from the guest</p>\n");
    await unary(fx.client, AgentService.method.startContainer, { containerId: "web" });
    const id = await openWhenListening(port);
    const request = Buffer.from("GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
    assert.equal((await unary(fx.client, PortForward.method.writePort, { connectionId: id, data: request })).len, request.length);
    const response = await readPortToEnd(id);
    assert.match(response, /^HTTP\/1\.[01] 200/);
    assert.match(response, /hello from the guest/);
    await unary(fx.client, PortForward.method.closePort, { connectionId: id });
    await rejectsWith(unary(fx.client, PortForward.method.readPort, { connectionId: id, len: 10 }), "NotFound");
    await unary(fx.client, AgentService.method.removeContainer, { containerId: "web", timeout: 0 });
  });

  it("carries bytes both ways with nc, and leaves DestroySandbox to close what is still open", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    await fx.createContainer("nc", ["nc", "-l", "-p", String(port)]);
    await unary(fx.client, AgentService.method.startContainer, { containerId: "nc" });
    const id = await openWhenListening(port);
    await unary(fx.client, PortForward.method.writePort, { connectionId: id, data: Buffer.from("to the container\n") });
    assert.equal(await readAll(fx.client, "stdout", "nc", "", (t) => t.includes("\n")), "to the container\n");
    await unary(fx.client, AgentService.method.writeStdin, { containerId: "nc", execId: "", data: Buffer.from("to the host\n") });
    const r = await unary(fx.client, PortForward.method.readPort, { connectionId: id, len: 4096 });
    assert.equal(Buffer.from(r.data).toString(), "to the host\n");
    // Left open: DestroySandbox (in afterEach) closes it.
    await rejectsWith(unary(fx.client, PortForward.method.readPort, { connectionId: "pf-999", len: 1 }), "NotFound");
    await rejectsWith(unary(fx.client, PortForward.method.openPort, { port: 0 }), "InvalidArgument");
    await rejectsWith(unary(fx.client, PortForward.method.openPort, { port: 70000 }), "InvalidArgument");
  });
});
