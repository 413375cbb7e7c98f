import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { BlockHotplug, scsiAddress, type BlockQmp } from "../../../src/hypervisor/block-hotplug.js";
import type { QmpCallOptions, QmpEvent, QmpEventListener } from "../../../src/hypervisor/qmp.js";
import type { VmSpec } from "../../../src/hypervisor/spec.js";

const isKind = (kind: string, pattern?: RegExp) => (err: unknown) =>
  err instanceof VmpodError && err.kind === kind && (pattern === undefined || pattern.test(err.message));

/**
 * QEMU's block layer as far as hot-plug sees it: nodes and devices, with
 * SCSI's immediate unplug (DEVICE_DELETED before device_del answers). A
 * command named in `failures` fails the given number of times, after doing
 * its work when `failAfter` says so (an answer lost after QEMU acted).
 */
class FakeBlockQmp implements BlockQmp {
  readonly calls: string[] = [];
  readonly nodes = new Set<string>();
  readonly devices = new Map<string, Record<string, unknown>>();
  readonly failures = new Map<string, { times: number; kind: "Internal" | "DeadlineExceeded"; afterWork?: boolean }>();
  /** device_del is accepted but DEVICE_DELETED never comes (a guest that holds on, for PCI). */
  silentUnplug = false;
  private readonly listeners = new Set<QmpEventListener>();

  async execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, options?: QmpCallOptions): Promise<T> {
    this.calls.push(command);
    if (options?.signal?.aborted) throw new VmpodError("Canceled", `qmp ${command}: canceled`);
    const failure = this.failures.get(command);
    const fail = failure !== undefined && failure.times > 0;
    if (fail) failure.times--;
    if (fail && !failure.afterWork) throw new VmpodError(failure.kind, `qmp ${command}: injected failure`);
    const result = this.apply(command, args ?? {});
    if (fail) throw new VmpodError(failure.kind, `qmp ${command}: injected failure after the work`);
    return result as T;
  }

  async deviceAdd(props: { driver: string; id: string } & Readonly<Record<string, unknown>>, options?: QmpCallOptions): Promise<void> {
    await this.execute("device_add", props, options);
  }

  async deviceDel(id: string, options?: QmpCallOptions): Promise<void> {
    await this.execute("device_del", { id }, options);
  }

  waitForEvent(event: string, match: (event: QmpEvent) => boolean = () => true, options: QmpCallOptions = {}): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => finish(new VmpodError("DeadlineExceeded", `wait for ${event}`)), options.timeoutMs ?? 1e9);
      const onAbort = () => finish(new VmpodError("Canceled", `wait for ${event}`));
      const listener = (e: QmpEvent) => {
        if (e.event === event && match(e)) finish(undefined, e);
      };
      const finish = (err: Error | undefined, e?: QmpEvent) => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(e!);
      };
      this.listeners.add(listener);
      options.signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  private apply(command: string, args: Readonly<Record<string, unknown>>): unknown {
    switch (command) {
      case "blockdev-add": {
        const node = args["node-name"] as string;
        if (this.nodes.has(node)) throw new VmpodError("Internal", `qmp blockdev-add: duplicate node ${node}`);
        this.nodes.add(node);
        return {};
      }
      case "device_add": {
        const id = args["id"] as string;
        if (!this.nodes.has(args["drive"] as string)) throw new VmpodError("Internal", "qmp device_add: no such drive");
        this.devices.set(id, { ...args });
        return {};
      }
      case "device_del": {
        const id = args["id"] as string;
        if (!this.devices.has(id)) throw new VmpodError("NotFound", `qmp device_del: Device '${id}' not found`);
        this.devices.delete(id);
        if (!this.silentUnplug) {
          const event: QmpEvent = { event: "DEVICE_DELETED", data: { device: id, path: `/machine/peripheral/${id}` }, timestamp: { seconds: 0, microseconds: 0 } };
          for (const l of [...this.listeners]) l(event);
        }
        return {};
      }
      case "blockdev-del": {
        const node = args["node-name"] as string;
        if (!this.nodes.has(node)) throw new VmpodError("Internal", `qmp blockdev-del: Failed to find node with node-name='${node}'`);
        if ([...this.devices.values()].some((d) => d["drive"] === node)) throw new VmpodError("Internal", `qmp blockdev-del: node ${node} is in use`);
        this.nodes.delete(node);
        return {};
      }
      case "query-named-block-nodes":
        return [...this.nodes].map((n) => ({ "node-name": n }));
      default:
        throw new VmpodError("Unimplemented", `qmp ${command}: not faked`);
    }
  }
}

const SPEC: VmSpec = {
  id: "pod1",
  qemuPath: "/usr/bin/qemu-system-x86_64",
  runDir: "/run/vmpod/pod1",
  machine: "microvm",
  accel: "tcg",
  vcpus: 1,
  memoryMiB: 256,
  qmpSocket: "/run/vmpod/pod1/qmp.sock",
  consoleLog: "/run/vmpod/pod1/console.log",
  blockHotplug: { driver: "virtio-scsi" },
};

describe("block device hot-plug (fake QMP)", () => {
  let dir: string;
  let image: string;
  let qmp: FakeBlockQmp;
  let disks: BlockHotplug;
  const disk = (id: string, extra: { serial?: string; path?: string } = {}) => ({ kind: "block", id, path: extra.path ?? image, readonly: true, ...(extra.serial ? { serial: extra.serial } : {}) }) as const;
  /** Nothing of ours is left in QEMU. */
  const assertEmpty = () => {
    assert.deepEqual([...qmp.nodes], []);
    assert.deepEqual([...qmp.devices.keys()], []);
  };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-blk-"));
    image = join(dir, "layer.erofs");
    await writeFile(image, Buffer.alloc(4096));
    qmp = new FakeBlockQmp();
    disks = new BlockHotplug(SPEC, qmp, 200);
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("adds a read-only raw node and a scsi-hd on the controller, at SCSI address TARGET:LUN", async () => {
    const attached = await disks.add(disk("layer-a", { serial: "sha256-abc" }), {});
    assert.deepEqual(attached, { kind: "block", id: "layer-a", storageDriver: "scsi", source: "0:0" });
    assert.deepEqual(qmp.calls, ["blockdev-add", "device_add"]);
    assert.deepEqual(qmp.devices.get("vmpod-disk0"), {
      driver: "scsi-hd",
      id: "vmpod-disk0",
      drive: "vmpod-node0",
      bus: "scsi0.0",
      channel: 0,
      "scsi-id": 0,
      lun: 0,
      serial: "sha256-abc",
    });
    const second = await disks.add(disk("layer-b"), {});
    assert.equal(second.kind === "block" && second.source, "0:1");
    assert.deepEqual(disks.ids.sort(), ["layer-a", "layer-b"]);
  });

  it("removes with device_del, DEVICE_DELETED and blockdev-del, frees the address, and says NotFound the second time", async () => {
    await disks.add(disk("a"), {});
    await disks.add(disk("b"), {});
    await disks.remove("a", {});
    assert.deepEqual(qmp.calls.slice(4), ["device_del", "blockdev-del"]);
    assert.deepEqual([...qmp.nodes], ["vmpod-node1"]);
    await assert.rejects(disks.remove("a", {}), isKind("NotFound"));
    const again = await disks.add(disk("c"), {});
    assert.equal(again.kind === "block" && again.source, "0:0", "the freed address is used again");
    await disks.remove("b", {});
    await disks.remove("c", {});
    assertEmpty();
  });

  it("maps disk numbers to SCSI targets of 256 LUNs", () => {
    assert.deepEqual(scsiAddress(0), { target: 0, lun: 0, address: "0:0" });
    assert.deepEqual(scsiAddress(255), { target: 0, lun: 255, address: "0:255" });
    assert.deepEqual(scsiAddress(256), { target: 1, lun: 0, address: "1:0" });
  });

  it("deletes the node when device_add fails, and leaves nothing", async () => {
    qmp.failures.set("device_add", { times: 1, kind: "Internal" });
    await assert.rejects(disks.add(disk("a"), {}), isKind("Internal", /injected/));
    assert.deepEqual(qmp.calls, ["blockdev-add", "device_add", "device_del", "blockdev-del"]);
    assertEmpty();
    assert.equal(disks.has("a"), false);
  });

  it("undoes a step whose answer was lost after QEMU carried it out", async () => {
    qmp.failures.set("device_add", { times: 1, kind: "DeadlineExceeded", afterWork: true });
    await assert.rejects(disks.add(disk("a"), {}), isKind("DeadlineExceeded"));
    assertEmpty();
    qmp.failures.set("blockdev-add", { times: 1, kind: "DeadlineExceeded", afterWork: true });
    await assert.rejects(disks.add(disk("b"), {}), isKind("DeadlineExceeded"));
    assertEmpty();
  });

  it("treats a blockdev-add that failed outright as nothing to undo", async () => {
    qmp.failures.set("blockdev-add", { times: 1, kind: "Internal" });
    await assert.rejects(disks.add(disk("a"), {}), isKind("Internal"));
    assert.deepEqual(qmp.calls, ["blockdev-add", "blockdev-del", "query-named-block-nodes"]);
    assertEmpty();
  });

  it("keeps a disk whose undo failed, so that removeDevice finishes it", async () => {
    qmp.failures.set("device_add", { times: 1, kind: "Internal" });
    qmp.failures.set("blockdev-del", { times: 1, kind: "Internal" });
    await assert.rejects(disks.add(disk("a"), {}), isKind("Internal", /undo failed/));
    assert.ok(disks.has("a"));
    assert.deepEqual([...qmp.nodes], ["vmpod-node0"]);
    const other = await disks.add(disk("b"), {});
    assert.equal(other.kind === "block" && other.source, "0:1", "the stuck address stays taken");
    await disks.remove("a", {});
    await disks.remove("b", {});
    assertEmpty();
  });

  it("times out waiting for DEVICE_DELETED, then finishes on a second removal", async () => {
    await disks.add(disk("a"), {});
    qmp.silentUnplug = true;
    await assert.rejects(disks.remove("a", {}), isKind("DeadlineExceeded", /vmpod-disk0/));
    assert.ok(disks.has("a"), "still listed after a failed removal");
    qmp.silentUnplug = false;
    await disks.remove("a", {});
    assertEmpty();
  });

  it("finishes a removal whose blockdev-del failed without unplugging again", async () => {
    await disks.add(disk("a"), {});
    qmp.failures.set("blockdev-del", { times: 1, kind: "Internal" });
    await assert.rejects(disks.remove("a", {}), isKind("Internal"));
    const before = qmp.calls.length;
    await disks.remove("a", {});
    assert.deepEqual(qmp.calls.slice(before), ["blockdev-del"]);
    assertEmpty();
  });

  it("counts a node QEMU no longer has as deleted", async () => {
    await disks.add(disk("a"), {});
    qmp.failures.set("blockdev-del", { times: 1, kind: "Internal", afterWork: true });
    await disks.remove("a", {});
    assert.equal(disks.has("a"), false);
    assertEmpty();
  });

  it("refuses bad requests before calling QEMU", async () => {
    await assert.rejects(disks.add(disk("../x"), {}), isKind("InvalidArgument"));
    await assert.rejects(disks.add(disk("a", { path: "relative.erofs" }), {}), isKind("InvalidArgument"));
    await assert.rejects(disks.add(disk("a", { serial: "x".repeat(37) }), {}), isKind("InvalidArgument", /serial/));
    await assert.rejects(disks.add(disk("a", { path: join(dir, "missing.erofs") }), {}), isKind("FailedPrecondition", /not found/));
    await assert.rejects(disks.add(disk("a", { path: dir }), {}), isKind("FailedPrecondition", /regular file/));
    const noController = new BlockHotplug({ ...SPEC, blockHotplug: undefined } as unknown as VmSpec, qmp, 200);
    await assert.rejects(noController.add(disk("a"), {}), isKind("FailedPrecondition", /blockHotplug/));
    const blk = new BlockHotplug({ ...SPEC, machine: "q35", blockHotplug: { driver: "virtio-blk" }, hotplugPorts: 1 }, qmp, 200);
    await assert.rejects(blk.add(disk("a"), {}), isKind("Unimplemented"));
    assert.deepEqual(qmp.calls, []);
    await disks.add(disk("a"), {});
    await assert.rejects(disks.add(disk("a"), {}), isKind("AlreadyExists"));
  });

  it("stops at a canceled signal and leaves nothing", async () => {
    const abort = new AbortController();
    abort.abort();
    await assert.rejects(disks.add(disk("a"), { signal: abort.signal }), isKind("Canceled"));
    assertEmpty();
    assert.equal(disks.has("a"), false);
  });
});
