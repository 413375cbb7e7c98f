import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { QmpClient, type QmpEvent } from "../../../src/hypervisor/qmp.js";

interface Command {
  readonly execute: string;
  readonly arguments?: Record<string, unknown>;
  readonly id?: unknown;
}

/** What the fake does with a command: answer it (now or later) or say nothing. */
type Handler = (command: Command, server: FakeQmp) => void;

const GREETING = { QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "Debian" }, capabilities: ["oob"] } };

/** A QMP server on a unix socket, scripted per command. */
class FakeQmp {
  readonly received: Command[] = [];
  readonly handlers = new Map<string, Handler>();
  socket: net.Socket | undefined;
  private readonly server: net.Server;

  constructor(readonly path: string) {
    this.handlers.set("qmp_capabilities", (c, s) => s.reply(c, {}));
    this.server = net.createServer((socket) => {
      this.socket = socket;
      socket.write(JSON.stringify(GREETING) + "\r\n");
      let buffered = "";
      socket.on("data", (chunk) => {
        buffered += chunk.toString();
        let nl: number;
        while ((nl = buffered.indexOf("\n")) >= 0) {
          const command = JSON.parse(buffered.slice(0, nl)) as Command;
          buffered = buffered.slice(nl + 1);
          this.received.push(command);
          const handler = this.handlers.get(command.execute);
          if (handler) handler(command, this);
          else this.send({ error: { class: "CommandNotFound", desc: `The command ${command.execute} has not been found` }, id: command.id });
        }
      });
      socket.on("error", () => {});
    });
  }

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  reply(command: Command, value: unknown): void {
    this.send({ return: value, id: command.id });
  }

  send(message: unknown): void {
    this.socket?.write(JSON.stringify(message) + "\r\n");
  }

  event(name: string, data: Record<string, unknown> = {}): void {
    this.send({ event: name, data, timestamp: { seconds: 1700000000, microseconds: 5 } });
  }

  async close(): Promise<void> {
    this.socket?.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

const isKind = (kind: string, pattern?: RegExp) => (err: unknown) =>
  err instanceof VmpodError && err.kind === kind && (pattern === undefined || pattern.test(err.message));

describe("qmp client", () => {
  let dir: string;
  let fake: FakeQmp;
  let client: QmpClient | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-qmp-"));
    fake = new FakeQmp(join(dir, "qmp.sock"));
    await fake.listen();
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("reads the greeting and negotiates capabilities before anything else", async () => {
    client = await QmpClient.connect(fake.path);
    assert.equal(client.greeting?.version.qemu.major, 7);
    assert.deepEqual(
      fake.received.map((c) => c.execute),
      ["qmp_capabilities"],
    );
  });

  it("fails to connect with Unavailable when nothing listens or the server hangs up before its greeting", async () => {
    await assert.rejects(QmpClient.connect(join(dir, "nothing.sock")), isKind("Unavailable"));
    const rude = net.createServer((socket) => socket.destroy());
    const path = join(dir, "rude.sock");
    await new Promise<void>((resolve) => rude.listen(path, resolve));
    try {
      await assert.rejects(QmpClient.connect(path), isKind("Unavailable"));
    } finally {
      await new Promise((resolve) => rude.close(resolve));
    }
  });

  it("matches concurrent answers to their commands by id, in any order", async () => {
    const held: Command[] = [];
    fake.handlers.set("query-status", (c) => held.push(c));
    fake.handlers.set("query-name", (c, s) => s.reply(c, { name: "vm" }));
    client = await QmpClient.connect(fake.path);
    const status = client.queryStatus();
    const name = await client.execute<{ name: string }>("query-name");
    assert.deepEqual(name, { name: "vm" });
    assert.equal(held.length, 1);
    fake.reply(held[0]!, { status: "paused", running: false });
    assert.deepEqual(await status, { status: "paused", running: false });
  });

  it("sends the typed commands QEMU knows, with their arguments", async () => {
    for (const name of ["stop", "cont", "device_add", "device_del", "chardev-add", "chardev-remove"]) {
      fake.handlers.set(name, (c, s) => s.reply(c, {}));
    }
    client = await QmpClient.connect(fake.path);
    await client.stop();
    await client.cont();
    await client.chardevAdd("chr-x", { type: "socket", data: { addr: { type: "unix", data: { path: "/s" } }, server: false } });
    await client.deviceAdd({ driver: "vhost-user-fs-pci", id: "x", chardev: "chr-x", tag: "t", bus: "hp0" });
    await client.deviceDel("x");
    await client.chardevRemove("chr-x");
    const sent = fake.received.slice(1).map((c) => [c.execute, c.arguments]);
    assert.deepEqual(sent, [
      ["stop", undefined],
      ["cont", undefined],
      ["chardev-add", { id: "chr-x", backend: { type: "socket", data: { addr: { type: "unix", data: { path: "/s" } }, server: false } } }],
      ["device_add", { driver: "vhost-user-fs-pci", id: "x", chardev: "chr-x", tag: "t", bus: "hp0" }],
      ["device_del", { id: "x" }],
      ["chardev-remove", { id: "chr-x" }],
    ]);
  });

  it("turns QMP errors into VmpodErrors naming class and description", async () => {
    fake.handlers.set("device_del", (c, s) =>
      s.send({ error: { class: "DeviceNotFound", desc: "Device 'nope' not found" }, id: c.id }),
    );
    fake.handlers.set("device_add", (c, s) => s.send({ error: { class: "GenericError", desc: "Bus 'hp9' not found" }, id: c.id }));
    client = await QmpClient.connect(fake.path);
    await assert.rejects(client.deviceDel("nope"), isKind("NotFound", /device_del: DeviceNotFound: Device 'nope' not found/));
    await assert.rejects(client.deviceAdd({ driver: "d", id: "i" }), isKind("Internal", /GenericError: Bus 'hp9' not found/));
    await assert.rejects(client.execute("no-such-command"), isKind("Unimplemented", /CommandNotFound/));
  });

  it("delivers events to listeners by name and to catch-all listeners, until unsubscribed", async () => {
    client = await QmpClient.connect(fake.path);
    const named: QmpEvent[] = [];
    const all: string[] = [];
    const offNamed = client.on("STOP", (e) => named.push(e));
    client.on("*", (e) => all.push(e.event));
    const resumed = client.waitForEvent("RESUME");
    fake.event("STOP");
    fake.event("RESUME");
    await resumed;
    offNamed();
    fake.event("STOP");
    const shutdown = client.waitForEvent("SHUTDOWN", (e) => e.data["guest"] === true);
    fake.event("SHUTDOWN", { guest: false, reason: "host-qmp-quit" });
    fake.event("SHUTDOWN", { guest: true, reason: "guest-shutdown" });
    assert.equal((await shutdown).data["reason"], "guest-shutdown");
    assert.equal(named.length, 1);
    assert.deepEqual(named[0]?.timestamp, { seconds: 1700000000, microseconds: 5 });
    assert.deepEqual(all, ["STOP", "RESUME", "STOP", "SHUTDOWN", "SHUTDOWN"]);
  });

  it("rejects pending calls and event waits with Unavailable when the server goes away, and later calls too", async () => {
    fake.handlers.set("query-status", () => {});
    client = await QmpClient.connect(fake.path);
    const pending = client.queryStatus();
    const waiting = client.waitForEvent("SHUTDOWN");
    fake.socket?.destroy();
    await assert.rejects(pending, isKind("Unavailable"));
    await assert.rejects(waiting, isKind("Unavailable"));
    await client.done;
    assert.ok(client.isClosed);
    await assert.rejects(client.cont(), isKind("Unavailable"));
  });

  it("counts quit as done when QEMU closes the connection instead of answering", async () => {
    fake.handlers.set("quit", (_c, s) => s.socket?.destroy());
    client = await QmpClient.connect(fake.path);
    await client.quit();
    assert.ok(client.isClosed);
  });

  it("gives up on a call at its timeout or abort, and ignores the late answer", async () => {
    const held: Command[] = [];
    fake.handlers.set("query-status", (c) => held.push(c));
    fake.handlers.set("query-name", (c, s) => s.reply(c, { name: "vm" }));
    client = await QmpClient.connect(fake.path);
    await assert.rejects(client.queryStatus({ timeoutMs: 20 }), isKind("DeadlineExceeded", /query-status/));
    const controller = new AbortController();
    const aborted = client.queryStatus({ signal: controller.signal });
    controller.abort();
    await assert.rejects(aborted, isKind("Canceled"));
    await assert.rejects(client.queryStatus({ signal: controller.signal }), isKind("Canceled"));
    for (const c of held) fake.reply(c, { status: "running", running: true });
    assert.deepEqual(await client.execute("query-name"), { name: "vm" });
  });

  it("removes its abort listeners once a call is settled", async () => {
    fake.handlers.set("query-status", (c, s) => s.reply(c, { status: "running", running: true }));
    client = await QmpClient.connect(fake.path);
    const controller = new AbortController();
    let added = 0;
    let removed = 0;
    const signal = controller.signal;
    const add = signal.addEventListener.bind(signal);
    const remove = signal.removeEventListener.bind(signal);
    signal.addEventListener = ((...args: Parameters<typeof add>) => {
      added++;
      add(...args);
    }) as typeof signal.addEventListener;
    signal.removeEventListener = ((...args: Parameters<typeof remove>) => {
      removed++;
      remove(...args);
    }) as typeof signal.removeEventListener;
    for (let i = 0; i < 3; i++) await client.queryStatus({ signal });
    const event = client.waitForEvent("STOP", () => true, { signal });
    fake.event("STOP");
    await event;
    assert.equal(added, 4);
    assert.equal(removed, 4);
  });

  it("closes idempotently, and destroy passes its reason to pending calls", async () => {
    fake.handlers.set("query-status", () => {});
    client = await QmpClient.connect(fake.path);
    const pending = client.queryStatus();
    const reason = new VmpodError("Canceled", "vm is going away");
    client.destroy(reason);
    client.destroy(new VmpodError("Internal", "second"));
    client.close();
    client.close();
    await assert.rejects(pending, (err: unknown) => err === reason);
    await client.done;
  });

  it("ends the connection on an unreadable message", async () => {
    fake.handlers.set("query-status", (_c, s) => s.socket?.write("{not json\r\n"));
    client = await QmpClient.connect(fake.path);
    await assert.rejects(client.queryStatus(), isKind("Internal", /unreadable/));
    assert.ok(client.isClosed);
  });
});
