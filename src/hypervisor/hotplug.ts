/**
 * virtio-fs shares added to and removed from a running q35 VM over QMP
 * (the VM templates restore a VM without its share, then add one): a fresh
 * virtiofsd, `chardev-add` of its socket, `device_add vhost-user-fs-pci` on a
 * free PCIe root port; and the reverse, waiting for the guest to let go.
 */
import { VmpodError, failedPrecondition, invalidArgument, kindOf, messageOf, notFound, wrap } from "../common/errors.js";
import { isSafeId } from "../common/ids.js";
import { Rollback } from "../common/rollback.js";
import { sleep } from "../common/time.js";
import type { CallOptions, VirtioFsDevice } from "./hypervisor.js";
import { checkPath } from "./preflight.js";
import type { VmProcess } from "./process.js";
import { hotplugPortId, virtioFsChardevId, VIRTIO_FS_QUEUE_SIZE } from "./qemu-args.js";
import type { QmpClient } from "./qmp.js";
import { BOOT_SHARE_ID, needsSharedMemory, validateSharedDir, validateSocketPath, validateVirtioFsTag, vmPaths, type VmSpec } from "./spec.js";
import { startVirtiofsd, stopVirtiofsd } from "./virtiofsd.js";

interface Attached {
  readonly port: string;
  readonly daemon: VmProcess;
  readonly socketPath: string;
  readonly tag: string;
  readonly sourceDir: string;
}

/** A share attached, as the VM's handle lists it. */
export interface AttachedShare {
  readonly id: string;
  readonly tag: string;
  readonly sourceDir: string;
  readonly port: string;
  readonly daemon: VmProcess;
}

/** How long QEMU is given to reach a virtiofsd just started. */
const DAEMON_CONNECT_MS = 2_000;
const DAEMON_CONNECT_RETRY_MS = 10;

/**
 * Runs `connect` (QEMU's chardev-add to a virtiofsd just started) again
 * while it fails as QEMU's own refusal (Internal) and the daemon still
 * runs: virtiofsd's socket file exists a moment before it listens, and
 * QEMU, told to connect in that moment, finds the connection refused (seen
 * under load when a restored VM's share is added). A failed chardev-add
 * leaves nothing behind, so trying again is safe.
 */
export async function whileDaemonStarts(
  connect: () => Promise<void>,
  alive: () => boolean,
  signal?: AbortSignal,
  limits: { timeoutMs: number; retryMs: number } = { timeoutMs: DAEMON_CONNECT_MS, retryMs: DAEMON_CONNECT_RETRY_MS },
): Promise<void> {
  const deadline = performance.now() + limits.timeoutMs;
  for (;;) {
    try {
      await connect();
      return;
    } catch (err) {
      if (kindOf(err) !== "Internal" || !alive() || performance.now() + limits.retryMs > deadline) throw err;
    }
    await sleep(limits.retryMs, signal).catch((err: unknown) => {
      throw wrap("wait for virtiofsd to listen", err, "Canceled");
    });
  }
}

export class VirtioFsHotplug {
  private readonly attached = new Map<string, Attached>();
  /** Ids being added or removed, so that two calls on one id do not interleave. */
  private readonly busy = new Set<string>();
  /** Ports taken by adds in flight. */
  private readonly reserved = new Set<string>();

  constructor(
    private readonly spec: VmSpec,
    private readonly qmp: QmpClient,
    private readonly unplugTimeoutMs: number,
    /** Ports kept for other devices (network cards added later). */
    private readonly otherPorts: ReadonlySet<string> = new Set(),
  ) {}

  /** True while any share added at run time is attached (or being added or removed). */
  hasDevices(): boolean {
    return this.attached.size > 0 || this.busy.size > 0;
  }

  /** The shares attached now; none while one is being added or removed. */
  list(): AttachedShare[] {
    if (this.busy.size > 0) throw failedPrecondition("a virtio-fs share is being added or removed");
    return [...this.attached].map(([id, a]) => ({ id, tag: a.tag, sourceDir: a.sourceDir, port: a.port, daemon: a.daemon }));
  }

  /** Takes over a share an earlier vmpod added (its daemon already adopted). */
  adopt(share: AttachedShare): void {
    if (!isSafeId(share.id) || this.attached.has(share.id)) throw invalidArgument(`bad or repeated device id ${JSON.stringify(share.id)}`);
    const socketPath = vmPaths(this.spec.runDir).virtiofsSocket(share.id);
    this.attached.set(share.id, { port: share.port, daemon: share.daemon, socketPath, tag: share.tag, sourceDir: share.sourceDir });
  }

  /** True for an id this manages (added, or being added or removed). */
  has(id: string): boolean {
    return this.attached.has(id) || this.busy.has(id);
  }

  async add(device: VirtioFsDevice, options: CallOptions): Promise<void> {
    const settings = this.spec.virtiofsd;
    if (this.spec.machine !== "q35") throw failedPrecondition(`${this.spec.machine} has no hot-plug: give the share at boot`);
    if (!needsSharedMemory(this.spec)) throw failedPrecondition("virtio-fs needs shared guest memory: set sharedMemory in the vm spec");
    if (!settings) throw failedPrecondition("no virtiofsd settings in the vm spec");
    if (!isSafeId(device.id) || device.id === BOOT_SHARE_ID) throw invalidArgument(`bad device id ${JSON.stringify(device.id)}`);
    validateVirtioFsTag(device.tag);
    validateSharedDir(device.sourceDir);
    if (this.attached.has(device.id) || this.busy.has(device.id)) throw new VmpodError("AlreadyExists", `device ${device.id} exists`);
    const socketPath = vmPaths(this.spec.runDir).virtiofsSocket(device.id);
    validateSocketPath("virtiofsd socket", socketPath);
    const missing = await checkPath({ what: "shared directory", path: device.sourceDir, need: "directory" });
    if (missing) throw missing;
    const port = this.freePort();
    if (port === undefined) throw new VmpodError("ResourceExhausted", `no free hot-plug port (the vm has ${this.spec.hotplugPorts ?? 0})`);

    this.busy.add(device.id);
    this.reserved.add(port);
    const undo = new Rollback();
    try {
      const start = options.signal ? { signal: options.signal } : {};
      const daemon = await startVirtiofsd({ ...settings, socketPath, sourceDir: device.sourceDir }, start);
      undo.push("stop virtiofsd", () => stopVirtiofsd(daemon, socketPath));
      const chardev = virtioFsChardevId(device.id);
      await whileDaemonStarts(
        () => this.qmp.chardevAdd(chardev, { type: "socket", data: { addr: { type: "unix", data: { path: socketPath } }, server: false } }, options),
        () => !this.qmp.isClosed && daemon.exitStatus === undefined,
        options.signal,
      );
      undo.push("remove chardev", () => this.qmp.chardevRemove(chardev));
      await this.qmp.deviceAdd(
        { driver: "vhost-user-fs-pci", id: device.id, chardev, tag: device.tag, "queue-size": VIRTIO_FS_QUEUE_SIZE, bus: port },
        options,
      );
      undo.commit();
      this.attached.set(device.id, { port, daemon, socketPath, tag: device.tag, sourceDir: device.sourceDir });
    } catch (err) {
      await undo.rollback().catch(() => {});
      throw err;
    } finally {
      this.busy.delete(device.id);
      this.reserved.delete(port);
    }
  }

  /**
   * Asks the guest to release the device and waits for DEVICE_DELETED, then
   * removes its chardev and stops its virtiofsd.
   */
  async remove(id: string, options: CallOptions): Promise<void> {
    const entry = this.attached.get(id);
    if (!entry) throw notFound(`no hot-added device ${id}`);
    if (this.busy.has(id)) throw failedPrecondition(`device ${id} is being removed`);
    this.busy.add(id);
    try {
      // Subscribe before asking, so that a quick answer is not missed.
      const giveUp = new AbortController();
      const signal = options.signal ? AbortSignal.any([options.signal, giveUp.signal]) : giveUp.signal;
      const deleted = this.qmp.waitForEvent("DEVICE_DELETED", (e) => e.data["device"] === id, { signal, timeoutMs: this.unplugTimeoutMs });
      deleted.catch(() => {});
      try {
        await this.qmp.deviceDel(id, options);
      } catch (err) {
        giveUp.abort();
        throw err;
      }
      try {
        await deleted;
      } catch (err) {
        if (err instanceof VmpodError && err.kind === "DeadlineExceeded") {
          throw new VmpodError("DeadlineExceeded", `the guest did not release ${id} within ${this.unplugTimeoutMs} ms`);
        }
        throw err;
      }
      this.attached.delete(id);
      await this.qmp.chardevRemove(virtioFsChardevId(id), options);
      await stopVirtiofsd(entry.daemon, entry.socketPath);
    } finally {
      this.busy.delete(id);
    }
  }

  /** Stops the daemons of every hot-added device (the VM is going away). */
  async stopDaemons(): Promise<void> {
    const results = await Promise.allSettled([...this.attached.values()].map((a) => stopVirtiofsd(a.daemon, a.socketPath)));
    this.attached.clear();
    const failures = results.flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
    if (failures.length > 0) throw new VmpodError("Internal", "stop virtiofsd", { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }

  private freePort(): string | undefined {
    const used = new Set([...this.otherPorts, ...this.reserved, ...[...this.attached.values()].map((a) => a.port)]);
    for (let n = 0; n < (this.spec.hotplugPorts ?? 0); n++) {
      const port = hotplugPortId(n);
      if (!used.has(port)) return port;
    }
    return undefined;
  }
}
