import assert from "node:assert/strict";
import net from "node:net";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { PortForwarder } from "../../../guest/agent/port-forward.js";

describe("guest agent: forwarded connections", () => {
  let server: net.Server;
  let port: number;
  const accepted: net.Socket[] = [];

  beforeEach(async () => {
    server = net.createServer((s) => {
      accepted.push(s);
      s.on("data", (d) => s.write(`echo:${d.toString()}`));
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as net.AddressInfo).port;
  });

  afterEach(async () => {
    for (const s of accepted) s.destroy();
    await new Promise((r) => server.close(r));
  });

  it("connects, writes, reads as data arrives, and reads the end of the stream when the server closes", async () => {
    const pf = new PortForwarder(silentLogger);
    const id = await pf.open(port);
    assert.equal(await pf.write(id, Buffer.from("hi")), 2);
    assert.equal((await pf.read(id, 100)).toString(), "echo:hi");
    const pending = pf.read(id, 100);
    (accepted[0] as net.Socket).end();
    assert.equal((await pending).length, 0);
    pf.close(id);
    assert.equal(pf.size, 0);
  });

  it("gives unique ids, refuses bad ports and unknown ids, and says why a connection was refused", async () => {
    const pf = new PortForwarder(silentLogger);
    const a = await pf.open(port);
    const b = await pf.open(port);
    assert.notEqual(a, b);
    const kind = (k: string) => (err: unknown) => err instanceof VmpodError && err.kind === k;
    await assert.rejects(pf.open(0), kind("InvalidArgument"));
    await assert.rejects(pf.open(65536), kind("InvalidArgument"));
    assert.throws(() => pf.close("pf-0"), kind("NotFound"));
    const closedPort = await new Promise<number>((resolve) => {
      const probe = net.createServer().listen(0, "127.0.0.1", () => {
        const p = (probe.address() as net.AddressInfo).port;
        probe.close(() => resolve(p));
      });
    });
    await assert.rejects(pf.open(closedPort), (err: unknown) => kind("Unavailable")(err) && /ECONNREFUSED/.test((err as Error).message));
    const pending = pf.read(a, 10);
    pf.closeAll();
    assert.equal((await pending).length, 0, "a pending read sees the end when its connection is closed");
    assert.equal(pf.size, 0);
  });
});
