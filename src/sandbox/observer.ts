/**
 * What the sandbox layer tells whoever watches it (the daemon's metrics, the
 * debug copy of guest consoles into the log) about pod VMs, in its own
 * terms. The layer calls these and knows nothing of what is done with them;
 * `quietVmObserver` is the default.
 */
import type { BootTimings } from "./pod-vm.js";

/** A pod VM as its observers see it. */
export interface ObservedVm {
  readonly id: string;
  /** The file the guest's serial console (kernel, init, agent log) is written to. */
  readonly consoleLog: string;
  /** Resolves when the VM process has exited. */
  readonly exited: Promise<unknown>;
}

export interface VmObserver {
  /** A pod VM booted; the time each phase of its boot took. */
  booted(vm: ObservedVm, timings: BootTimings): void;
  /** A pod VM that outlived a restart of vmpod was taken over. */
  reattached(vm: ObservedVm): void;
}

/** Tells nobody anything. */
export const quietVmObserver: VmObserver = {
  booted() {},
  reattached() {},
};
