import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentClient } from "../../../src/agent/client.js";
import { connectAgent } from "../../../src/agent/connect.js";
import { UnixSocketTransport } from "../../../src/agent/transport.js";
import { TtrpcServer } from "../../../src/agent/ttrpc/server.js";
import { registerService } from "../../../src/agent/ttrpc/typed.js";
import { VmpodError } from "../../../src/common/errors.js";
import { AgentService, Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/agent_pb.js";

describe("agent connect", () => {
  let dir: string;
  let listener: net.Server;
  let server: TtrpcServer;
  const sockets: net.Socket[] = [];
  const clients: AgentClient[] = [];
  /** Methods in the order the agent received them. */
  let received: string[];
  let clockSet: () => void;
  let clockWasSet: Promise<void>;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-connect-"));
    received = [];
    clockWasSet = new Promise((resolve) => (clockSet = resolve));
    server = new TtrpcServer();
    registerService(server, Health, {
      // Answers only once the clock is set: a client that waits for this answer before sending the rest never gets it.
      async check() {
        received.push("check");
        await clockWasSet;
        return { status: HealthCheckResponse_ServingStatus.SERVING };
      },
    });
    registerService(server, AgentService, {
      async setGuestDateTime() {
        received.push("setGuestDateTime");
        clockSet();
        return {};
      },
      async reseedRandomDev(req) {
        received.push(`reseedRandomDev ${req.data.length}`);
        if (req.data.length === 0) throw new VmpodError("InvalidArgument", "no bytes");
        return {};
      },
    });
    listener = net.createServer((socket) => {
      sockets.push(socket);
      void server.serve(socket);
    });
    await new Promise<void>((resolve) => listener.listen(join(dir, "agent.sock"), resolve));
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.close();
    for (const s of sockets.splice(0)) s.destroy();
    await new Promise((resolve) => listener.close(resolve));
    await rm(dir, { recursive: true, force: true });
  });

  const transport = () => new UnixSocketTransport(join(dir, "agent.sock"), "test");

  it("sends the calls given alongside the health check without waiting for its answer", async () => {
    const agent = await connectAgent(transport(), {
      timeoutMs: 10_000,
      callTimeoutMs: 10_000,
      alongside: (a, call) => Promise.all([a.setGuestDateTime(new Date(), call), a.reseedRandomDev(new Uint8Array(8), call)]),
    });
    clients.push(agent);
    assert.deepEqual(received, ["check", "setGuestDateTime", "reseedRandomDev 8"]);
    assert.equal(agent.isClosed, false);
  });

  it("fails, closing the connection, when a call made alongside fails", async () => {
    clockSet();
    let made: AgentClient | undefined;
    await assert.rejects(
      connectAgent(transport(), {
        timeoutMs: 10_000,
        callTimeoutMs: 10_000,
        alongside: (a, call) => {
          made = a;
          return a.reseedRandomDev(new Uint8Array(0), call);
        },
      }),
      (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument",
    );
    assert.equal(made?.isClosed, true);
    assert.deepEqual(received, ["check", "reseedRandomDev 0"]);
  });
});
