/**
 * The boundary between the sandbox layer and whatever runs a pod's VM. The
 * sandbox layer speaks only this interface; `QemuHypervisor` (qemu.ts) is the
 * implementation, and unit tests of the layers above use fakes of it.
 *
 * Phases, as the host resources follow them: `prepare` (run directory, host
 * daemons such as virtiofsd), `start` (the VM process and its control
 * channel), `stop` (idempotent), `cleanup` (safe after a partial prepare or
 * a failed start, and idempotent).
 */
import type { ProcessRef } from "./adopted-process.js";
import type { VmSpec } from "./spec.js";

export interface CallOptions {
  readonly signal?: AbortSignal;
}

export interface StopOptions {
  /** Milliseconds the VM gets to exit on its own before it is killed. */
  readonly timeoutMs?: number;
}

/** How the VM process ended: an exit code, or the signal that killed it. */
export interface VmExit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/**
 * A virtio-fs share added to a running VM (the VM templates restore a VM
 * without one and add it afterwards); the hypervisor starts and owns the
 * file-system daemon behind it. q35 only.
 */
export interface VirtioFsDevice {
  readonly kind: "virtio-fs";
  /** Unique among the VM's devices; `removeDevice` takes it. */
  readonly id: string;
  /** The mount tag the guest uses: `mount -t virtiofs TAG /mnt`. */
  readonly tag: string;
  /** The host directory shared into the guest. */
  readonly sourceDir: string;
}

/**
 * A disk backed by a host file (an image layer's erofs image), added to the
 * controller the spec's `blockHotplug` names.
 */
export interface BlockDevice {
  readonly kind: "block";
  /** Unique among the VM's devices; `removeDevice` takes it. */
  readonly id: string;
  /** The image file, used raw. */
  readonly path: string;
  readonly readonly: boolean;
  /** What the guest reads as the disk's serial number (1..36 of [A-Za-z0-9._-]). */
  readonly serial?: string;
}

/**
 * The card of a network the spec gives with `hotplug`: its tap backend is
 * on QEMU's command line, the card is added now on its port (`nicPort`).
 */
export interface NicDevice {
  readonly kind: "nic";
  /** The spec's netdev id of the card. */
  readonly id: string;
}

export type HotplugDevice = VirtioFsDevice | BlockDevice | NicDevice;

/** Where the guest finds a device just added. */
export type AttachedDevice =
  | { readonly kind: "virtio-fs"; readonly id: string; readonly tag: string }
  | { readonly kind: "nic"; readonly id: string; readonly mac: string }
  | {
      readonly kind: "block";
      readonly id: string;
      /**
       * The guest agent's storage driver and source that mount this disk:
       * "scsi" with the SCSI address "TARGET:LUN" (e.g. "0:3"), as Kata's
       * agent takes it.
       */
      readonly storageDriver: "scsi";
      readonly source: string;
    };

/**
 * What a later vmpod needs to take over a running VM (with its spec): its
 * processes, each by pid and start time. Kept on disk by the sandbox layer.
 */
export interface VmHandle {
  readonly qemu: ProcessRef;
  /** The daemon of the share given at boot. */
  readonly virtiofsd?: ProcessRef;
  /** virtio-fs shares added while the VM ran (a VM restored from a template), each with its daemon. */
  readonly addedShares?: readonly AddedShare[];
}

/** A virtio-fs share added at run time, as a later vmpod takes it over. */
export interface AddedShare {
  readonly id: string;
  readonly tag: string;
  readonly sourceDir: string;
  /** The PCIe root port it sits on. */
  readonly port: string;
  readonly virtiofsd: ProcessRef;
}

export interface Hypervisor {
  /**
   * Checks the spec and the files it names, creates the VM's run directory
   * and starts the host daemons the VM needs (virtiofsd for a shared
   * directory). Undoes its own steps when it fails.
   */
  prepare(spec: VmSpec, options?: CallOptions): Promise<void>;
  /** Launches the VM and connects its control channel. */
  start(options?: CallOptions): Promise<void>;
  /** Once started: what `adopt` needs to take this VM over after vmpod restarts. */
  handle(): Promise<VmHandle>;
  /**
   * Takes over a VM an earlier vmpod started from `spec` (instead of
   * prepare and start): finds its processes by `handle` and connects its
   * control channel. NotFound when the VM no longer runs. On failure
   * nothing is stopped; `stop` and `cleanup` then remove what is left.
   */
  adopt(spec: VmSpec, handle: VmHandle, options?: CallOptions): Promise<void>;
  /**
   * Pauses the VM and saves its whole state to `file` (VM templates); the VM
   * stays paused, and is stopped as usual afterwards.
   */
  saveState(file: string, options: CallOptions & { readonly timeoutMs: number }): Promise<void>;
  /**
   * On a VM started from a spec with `incoming`: loads the state saved in
   * `file`, leaving the VM paused (`resume` runs it). A state that does not
   * load makes QEMU exit; the error says so.
   */
  restoreState(file: string, options: CallOptions & { readonly timeoutMs: number }): Promise<void>;
  /** Runs the vCPUs of a paused VM. */
  resume(options?: CallOptions): Promise<void>;
  /** Adds a device to the running VM; undoes its own steps when it fails. */
  addDevice(device: HotplugDevice, options?: CallOptions): Promise<AttachedDevice>;
  /**
   * Removes a device added by addDevice, once the VM has let it go (it waits
   * for that, with a timeout). NotFound for an id not added (or already
   * removed). A block device's removal that failed part-way can be called
   * again and finishes what is left. SCSI disks are removed without the
   * guest's consent: release the guest's mounts of one before removing it.
   */
  removeDevice(id: string, options?: CallOptions): Promise<void>;
  /**
   * Stops the VM (a polite request, then by force after the timeout) and its
   * daemons. Idempotent; once called, start is refused.
   */
  stop(options?: StopOptions): Promise<void>;
  /** Resolves when the VM process has exited. */
  wait(): Promise<VmExit>;
  /** Stops what still runs and removes the run directory and sockets. Idempotent. */
  cleanup(): Promise<void>;
}
