import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TtrpcClient } from "../../../src/agent/ttrpc/client.js";
import { TtrpcServer } from "../../../src/agent/ttrpc/server.js";
import { FrameDecoder, encodeFrame, MessageType } from "../../../src/agent/ttrpc/frame.js";
import { registerService, unary } from "../../../src/agent/ttrpc/typed.js";
import { Health, HealthCheckResponse_ServingStatus, AgentService } from "../../../src/gen/agent_pb.js";
import { VmpodError } from "../../../src/common/errors.js";

describe("ttrpc framing", () => {
  it("decodes frames split across and joined within chunks", () => {
    const a = encodeFrame({ streamId: 1, type: MessageType.Request, flags: 0, payload: Buffer.from("hello") });
    const b = encodeFrame({ streamId: 3, type: MessageType.Response, flags: 2, payload: Buffer.alloc(0) });
    const all = Buffer.concat([a, b]);
    const decoder = new FrameDecoder();
    const frames = [...decoder.push(all.subarray(0, 4)), ...decoder.push(all.subarray(4, 17)), ...decoder.push(all.subarray(17))];
    assert.equal(frames.length, 2);
    assert.deepEqual(
      frames.map((f) => [f.streamId, f.type, f.flags, Buffer.from(f.payload).toString()]),
      [
        [1, 1, 0, "hello"],
        [3, 2, 2, ""],
      ],
    );
    assert.equal(all.readUInt32BE(0), 5, "length is big-endian payload length");
  });

  it("refuses a frame larger than the limit", () => {
    const header = Buffer.alloc(10);
    header.writeUInt32BE(64 << 20, 0);
    assert.throws(() => new FrameDecoder().push(header), (err: unknown) => err instanceof VmpodError && err.kind === "ResourceExhausted");
  });
});

describe("ttrpc client and server", () => {
  let dir: string;
  let listener: net.Server;
  let client: TtrpcClient;
  let server: TtrpcServer;
  const sockets: net.Socket[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-ttrpc-"));
    server = new TtrpcServer();
    listener = net.createServer((socket) => {
      sockets.push(socket);
      void server.serve(socket);
    });
    const path = join(dir, "s.sock");
    await new Promise<void>((resolve) => listener.listen(path, resolve));
    const socket = net.connect(path);
    await new Promise((resolve) => socket.once("connect", resolve));
    client = new TtrpcClient(socket);
  });

  afterEach(async () => {
    client.close();
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => listener.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  it("answers typed calls, concurrently and out of order", async () => {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    registerService(server, Health, {
      async check(req) {
        if (req.service === "slow") await gate;
        return { status: HealthCheckResponse_ServingStatus.SERVING };
      },
      async version() {
        return { agentVersion: "1.2.3", grpcVersion: "ttrpc" };
      },
    });
    const slow = unary(client, Health.method.check, { service: "slow" });
    const version = await unary(client, Health.method.version, {});
    assert.equal(version.agentVersion, "1.2.3");
    release();
    assert.equal((await slow).status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it("carries error kinds and reports unimplemented methods", async () => {
    registerService(server, AgentService, {
      async startContainer(req) {
        throw new VmpodError("NotFound", `container ${req.containerId} not found`);
      },
    });
    await assert.rejects(unary(client, AgentService.method.startContainer, { containerId: "x" }), (err: unknown) => {
      return err instanceof VmpodError && err.kind === "NotFound" && /container x not found/.test(err.message);
    });
    await assert.rejects(unary(client, AgentService.method.removeContainer, { containerId: "x" }), (err: unknown) => {
      return err instanceof VmpodError && err.kind === "Unimplemented";
    });
  });

  it("fails a call at its deadline and tells the handler", async () => {
    let handlerAborted: Promise<void> | undefined;
    registerService(server, Health, {
      async check(_req, ctx) {
        handlerAborted = new Promise((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
        await handlerAborted;
        return {};
      },
    });
    await assert.rejects(unary(client, Health.method.check, {}, { timeoutMs: 50 }), (err: unknown) => {
      return err instanceof VmpodError && err.kind === "DeadlineExceeded";
    });
    await handlerAborted;
  });

  it("cancels a call with an abort signal", async () => {
    registerService(server, Health, { check: () => new Promise(() => {}) });
    const controller = new AbortController();
    const call = unary(client, Health.method.check, {}, { signal: controller.signal });
    controller.abort();
    await assert.rejects(call, (err: unknown) => err instanceof VmpodError && err.kind === "Canceled");
  });

  it("fails pending calls with Unavailable when the peer goes away, and after", async () => {
    registerService(server, Health, { check: () => new Promise(() => {}) });
    const call = unary(client, Health.method.check, {});
    await new Promise((resolve) => setTimeout(resolve, 20));
    for (const s of sockets) s.destroy();
    await assert.rejects(call, (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable");
    await client.done;
    assert.equal(client.isClosed, true);
    await assert.rejects(unary(client, Health.method.check, {}), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable");
    client.close();
    client.close();
  });
});
