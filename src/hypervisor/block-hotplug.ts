/**
 * Disks added to and removed from a running VM over QMP: the read-only
 * erofs images of container image layers. On virtio-scsi, adding is
 * `blockdev-add` (a raw node over the file) then `device_add scsi-hd` on the
 * controller's bus at an address allocated here; removing is `device_del`,
 * DEVICE_DELETED, then `blockdev-del`. Every step that succeeded is undone
 * when a later one fails, so that no node is left behind in QEMU.
 *
 * SCSI unplug does not ask the guest: QEMU drops the disk at once and tells
 * the guest afterwards, so a disk the guest still has mounted is pulled from
 * under it (its reads fail). The caller releases the guest's mounts first.
 *
 * Addresses: disk n is SCSI target n / 256, LUN n % 256, channel 0, on the
 * one controller; the guest agent's "scsi" storage takes "TARGET:LUN".
 * The host page cache stays in use (`cache.direct` off): the layer files are
 * read-only and shared by every pod that uses the layer.
 */
import { VmpodError, failedPrecondition, invalidArgument, kindOf, messageOf, notFound } from "../common/errors.js";
import { isSafeId } from "../common/ids.js";
import { Rollback } from "../common/rollback.js";
import type { AttachedDevice, BlockDevice, CallOptions } from "./hypervisor.js";
import { checkPath } from "./preflight.js";
import { SCSI_BUS } from "./qemu-args.js";
import type { QmpClient } from "./qmp.js";
import type { VmSpec } from "./spec.js";

/** What this needs of the QMP client (unit tests give a fake). */
export type BlockQmp = Pick<QmpClient, "execute" | "deviceAdd" | "deviceDel" | "waitForEvent">;

export const LUNS_PER_TARGET = 256;
/** SCSI targets 0..255 of the one controller. */
export const MAX_BLOCK_DEVICES = 256 * LUNS_PER_TARGET;
/** scsi-hd refuses longer serial numbers. */
const MAX_SERIAL_LENGTH = 36;
/** QMP calls made while undoing get this long (never the caller's aborted signal). */
const UNDO_CALL_TIMEOUT_MS = 10_000;

interface Attached {
  readonly index: number;
  readonly qemuId: string;
  readonly node: string;
  /** True while QEMU may still hold the scsi-hd; false once only the node is left. */
  device: boolean;
}

/** The SCSI address of disk `index`, as "TARGET:LUN". */
export function scsiAddress(index: number): { target: number; lun: number; address: string } {
  const target = Math.floor(index / LUNS_PER_TARGET);
  const lun = index % LUNS_PER_TARGET;
  return { target, lun, address: `${target}:${lun}` };
}

/** QEMU's names for disk `index`: its device id and its block node (node names are at most 31 bytes). */
export function blockQemuNames(index: number): { qemuId: string; node: string } {
  return { qemuId: `vmpod-disk${index}`, node: `vmpod-node${index}` };
}

/** Checks a block device's description; throws InvalidArgument. */
export function validateBlockDevice(device: BlockDevice): void {
  if (!isSafeId(device.id)) throw invalidArgument(`bad device id ${JSON.stringify(device.id)}`);
  if (!device.path.startsWith("/") || device.path.includes("\0")) throw invalidArgument(`disk image must be an absolute path, not ${JSON.stringify(device.path)}`);
  if (device.serial !== undefined && !new RegExp(`^[A-Za-z0-9._-]{1,${MAX_SERIAL_LENGTH}}$`).test(device.serial)) {
    throw invalidArgument(`disk serial ${JSON.stringify(device.serial)} must be 1..${MAX_SERIAL_LENGTH} of [A-Za-z0-9._-]`);
  }
}

export class BlockHotplug {
  private readonly attached = new Map<string, Attached>();
  /** Ids being added or removed, so that two calls on one id do not interleave. */
  private readonly busy = new Set<string>();
  /** Addresses taken by adds in flight. */
  private readonly reserved = new Set<number>();

  constructor(
    private readonly spec: VmSpec,
    private readonly qmp: BlockQmp,
    private readonly unplugTimeoutMs: number,
  ) {}

  /** True for an id this manages (added, being added, or left half-removed). */
  has(id: string): boolean {
    return this.attached.has(id) || this.busy.has(id);
  }

  /** Ids of the disks attached, in no particular order. */
  get ids(): string[] {
    return [...this.attached.keys()];
  }

  async add(device: BlockDevice, options: CallOptions): Promise<AttachedDevice> {
    const driver = this.spec.blockHotplug?.driver;
    if (driver === undefined) throw failedPrecondition("the vm has no controller for disks: set blockHotplug in the vm spec");
    if (driver !== "virtio-scsi") throw new VmpodError("Unimplemented", `adding disks on ${driver} is not implemented: use virtio-scsi`);
    validateBlockDevice(device);
    if (this.has(device.id)) throw new VmpodError("AlreadyExists", `device ${device.id} exists`);
    const missing = await checkPath({ what: "disk image", path: device.path, need: "file" });
    if (missing) throw missing;
    const index = this.freeIndex();
    if (index === undefined) throw new VmpodError("ResourceExhausted", `the vm has ${MAX_BLOCK_DEVICES} disks already`);

    const { qemuId, node } = blockQemuNames(index);
    const { target, lun, address } = scsiAddress(index);
    this.busy.add(device.id);
    this.reserved.add(index);
    const undo = new Rollback();
    try {
      // Each undo is pushed before its step: a call given up (signal,
      // timeout) may still be carried out by QEMU, and the undo checks.
      undo.push("delete block node", () => this.deleteNode(node, {}));
      await this.qmp.execute(
        "blockdev-add",
        {
          "node-name": node,
          driver: "raw",
          "read-only": device.readonly,
          file: { driver: "file", filename: device.path, "read-only": device.readonly },
          cache: { direct: false },
        },
        options,
      );
      undo.push("unplug disk", () => this.unplug(qemuId, {}));
      await this.qmp.deviceAdd(
        {
          driver: "scsi-hd",
          id: qemuId,
          drive: node,
          bus: SCSI_BUS,
          channel: 0,
          "scsi-id": target,
          lun,
          ...(device.serial === undefined ? {} : { serial: device.serial }),
        },
        options,
      );
      undo.commit();
      this.attached.set(device.id, { index, qemuId, node, device: true });
      return { kind: "block", id: device.id, storageDriver: "scsi", source: address };
    } catch (err) {
      try {
        await undo.rollback();
      } catch (undoErr) {
        // Keep the address and the id, so that removeDevice can finish the job.
        this.attached.set(device.id, { index, qemuId, node, device: true });
        throw new VmpodError(kindOf(err) ?? "Internal", `${messageOf(err)}; undo failed: ${messageOf(undoErr)}`, {
          cause: new AggregateError([err, undoErr], "add disk and undo failed"),
        });
      }
      throw err;
    } finally {
      this.busy.delete(device.id);
      this.reserved.delete(index);
    }
  }

  /** Unplugs the disk (waiting for DEVICE_DELETED), then deletes its block node. */
  async remove(id: string, options: CallOptions): Promise<void> {
    const entry = this.attached.get(id);
    if (!entry) throw notFound(`no hot-added device ${id}`);
    if (this.busy.has(id)) throw failedPrecondition(`device ${id} is being added or removed`);
    this.busy.add(id);
    try {
      if (entry.device) {
        await this.unplug(entry.qemuId, options);
        entry.device = false;
      }
      await this.deleteNode(entry.node, options);
      this.attached.delete(id);
    } finally {
      this.busy.delete(id);
    }
  }

  /** Forgets every disk (the VM is gone, and its disks with it). */
  clear(): void {
    this.attached.clear();
  }

  /** `device_del` and the wait for DEVICE_DELETED; a device QEMU does not have counts as removed. */
  private async unplug(qemuId: string, options: CallOptions): Promise<void> {
    // Subscribe before asking: SCSI unplug is immediate, and the event can
    // come before the answer.
    const giveUp = new AbortController();
    const signal = options.signal ? AbortSignal.any([options.signal, giveUp.signal]) : giveUp.signal;
    const deleted = this.qmp.waitForEvent("DEVICE_DELETED", (e) => e.data["device"] === qemuId, { signal, timeoutMs: this.unplugTimeoutMs });
    deleted.catch(() => {});
    try {
      await this.qmp.deviceDel(qemuId, { ...callOptions(options), timeoutMs: UNDO_CALL_TIMEOUT_MS });
    } catch (err) {
      giveUp.abort();
      if (kindOf(err) === "NotFound") return;
      throw err;
    }
    try {
      await deleted;
    } catch (err) {
      if (kindOf(err) === "DeadlineExceeded") {
        throw new VmpodError("DeadlineExceeded", `QEMU did not report ${qemuId} deleted within ${this.unplugTimeoutMs} ms`);
      }
      throw err;
    }
  }

  /** `blockdev-del`; a node QEMU does not have (per query-named-block-nodes) counts as deleted. */
  private async deleteNode(node: string, options: CallOptions): Promise<void> {
    try {
      await this.qmp.execute("blockdev-del", { "node-name": node }, { ...callOptions(options), timeoutMs: UNDO_CALL_TIMEOUT_MS });
    } catch (err) {
      if (kindOf(err) === "Canceled" || kindOf(err) === "Unavailable") throw err;
      const nodes = await this.qmp.execute<{ "node-name"?: string }[]>("query-named-block-nodes", { flat: true }, { timeoutMs: UNDO_CALL_TIMEOUT_MS });
      if (nodes.some((n) => n["node-name"] === node)) throw err;
    }
  }

  private freeIndex(): number | undefined {
    const used = new Set([...this.reserved, ...[...this.attached.values()].map((a) => a.index)]);
    for (let n = 0; n < MAX_BLOCK_DEVICES; n++) if (!used.has(n)) return n;
    return undefined;
  }
}

function callOptions(options: CallOptions): { signal?: AbortSignal } {
  return options.signal ? { signal: options.signal } : {};
}
