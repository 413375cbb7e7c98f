/** Signal names as images and kubelet give them, and CRI resources as OCI resources. */
import { constants } from "node:os";
import { VmpodError } from "../common/errors.js";
import type { OciResources } from "../common/oci-spec.js";
import type { LinuxResources } from "./types.js";

/** "SIGTERM", "TERM", "15" → 15. */
export function signalNumber(name: string): number {
  if (/^\d+$/.test(name)) {
    const n = Number(name);
    if (n >= 1 && n <= 64) return n;
  }
  const upper = name.toUpperCase();
  const key = (upper.startsWith("SIG") ? upper : `SIG${upper}`) as keyof typeof constants.signals;
  const n = constants.signals[key];
  if (n === undefined) throw new VmpodError("InvalidArgument", `unknown signal ${JSON.stringify(name)}`);
  return n;
}

export function toOciResources(r: LinuxResources): OciResources {
  const cpu = {
    ...(r.cpuShares ? { shares: r.cpuShares } : {}),
    ...(r.cpuQuota ? { quota: r.cpuQuota } : {}),
    ...(r.cpuPeriod ? { period: r.cpuPeriod } : {}),
    ...(r.cpusetCpus ? { cpus: r.cpusetCpus } : {}),
    ...(r.cpusetMems ? { mems: r.cpusetMems } : {}),
  };
  const memory = {
    ...(r.memoryLimitBytes ? { limit: r.memoryLimitBytes } : {}),
    ...(r.memorySwapLimitBytes ? { swap: r.memorySwapLimitBytes } : {}),
  };
  return { ...(Object.keys(cpu).length > 0 ? { cpu } : {}), ...(Object.keys(memory).length > 0 ? { memory } : {}) };
}
