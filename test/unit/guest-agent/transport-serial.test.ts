import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { findPort, SerialTransport, type ByteDevice } from "../../../guest/agent/transport-serial.js";

/** A serial port's bytes as a script: what the host sends (null: the host is not connected). */
class FakeDevice implements ByteDevice {
  readonly written: Buffer[] = [];
  private readonly incoming: (Buffer | null)[] = [];
  private wake: (() => void) | undefined;
  closed = false;

  send(data: string | null): void {
    this.incoming.push(data === null ? null : Buffer.from(data));
    this.wake?.();
  }

  async read(buffer: Buffer): Promise<number> {
    while (this.incoming.length === 0) {
      if (this.closed) return 0;
      await new Promise<void>((r) => (this.wake = r));
    }
    const next = this.incoming.shift() as Buffer | null;
    if (next === null) return 0;
    next.copy(buffer);
    return next.length;
  }

  async write(data: Buffer): Promise<number> {
    this.written.push(Buffer.from(data));
    return data.length;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
  }
}

function collect(stream: Duplex): { text: () => string; ended: Promise<void> } {
  let text = "";
  stream.on("data", (c: Buffer) => (text += c.toString()));
  const ended = new Promise<void>((r) => stream.once("close", () => r()));
  return { text: () => text, ended };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(check());
};

describe("guest agent: virtio-serial sessions", () => {
  it("opens a session on the host's first bytes and ends it when the host disconnects; the next bytes open another", async () => {
    const device = new FakeDevice();
    const transport = new SerialTransport(device, "fake", silentLogger);
    const sessions: Duplex[] = [];
    await transport.start((s) => sessions.push(s));
    device.send("hello ");
    device.send("world");
    await until(() => sessions.length === 1);
    const first = collect(sessions[0] as Duplex);
    await until(() => first.text() === "hello world");
    device.send(null);
    await first.ended;
    device.send("again");
    await until(() => sessions.length === 2);
    const second = collect(sessions[1] as Duplex);
    await until(() => second.text() === "again");
    await transport.close();
  });

  it("writes a session's answers to the device, and drops those of a session that has ended", async () => {
    const device = new FakeDevice();
    const transport = new SerialTransport(device, "fake", silentLogger);
    const sessions: Duplex[] = [];
    await transport.start((s) => sessions.push(s));
    device.send("x");
    await until(() => sessions.length === 1);
    const first = sessions[0] as Duplex;
    await new Promise<void>((r) => first.write(Buffer.from("answer"), () => r()));
    assert.equal(Buffer.concat(device.written).toString(), "answer");
    device.send(null);
    await until(() => first.destroyed);
    first.write(Buffer.from("stale"), () => undefined);
    device.send("y");
    await until(() => sessions.length === 2);
    await new Promise<void>((r) => (sessions[1] as Duplex).write(Buffer.from("fresh"), () => r()));
    assert.equal(Buffer.concat(device.written).toString(), "answerfresh");
    await transport.close();
  });

  it("finds a port by the name in its sysfs entry, waiting for it, and gives up after the time allowed", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmpod-ports-"));
    try {
      const found = findPort(dir, "agent.channel.0", 5000);
      await mkdir(join(dir, "vport0p0"));
      await writeFile(join(dir, "vport0p0", "name"), "other\n");
      await new Promise((r) => setTimeout(r, 50));
      await mkdir(join(dir, "vport0p1"));
      await writeFile(join(dir, "vport0p1", "name"), "agent.channel.0\n");
      assert.equal(await found, "vport0p1");
      await assert.rejects(findPort(dir, "missing", 100), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
