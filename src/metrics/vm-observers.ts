/** Several VM observers as one (the metrics and the debug copy of consoles). */
import type { BootTimings } from "../sandbox/pod-vm.js";
import { quietVmObserver, type ObservedVm, type VmObserver } from "../sandbox/observer.js";

export function vmObservers(...observers: readonly (VmObserver | undefined)[]): VmObserver {
  const all = observers.filter((o): o is VmObserver => o !== undefined);
  if (all.length === 0) return quietVmObserver;
  return {
    booted(vm: ObservedVm, timings: BootTimings) {
      for (const o of all) o.booted(vm, timings);
    },
    reattached(vm: ObservedVm) {
      for (const o of all) o.reattached(vm);
    },
  };
}
