/**
 * The PodManager's plain functions: records as the statuses the CRI
 * reports, stats samples from cgroup figures, filters, and small promise
 * helpers.
 */
import { VmpodError } from "../common/errors.js";
import type { ContainerUsage, PodSandbox } from "./controller.js";
import { nowNs, type ContainerRecord, type PodRecord } from "./records.js";
import type { ContainerStatsSample, PodStatsSample } from "./runtime.js";
import type { ContainerStatus, LinuxResources, PodConfig, PodStatus } from "./types.js";

/** A pod's name as kubelet makes it unique: name, namespace, uid, attempt. */
export function podKey(config: PodConfig): string {
  const m = config.metadata;
  return `${m.name}_${m.namespace}_${m.uid}_${m.attempt}`;
}

export function labelsMatch(labels: Readonly<Record<string, string>>, wanted: Readonly<Record<string, string>> | undefined): boolean {
  return Object.entries(wanted ?? {}).every(([k, v]) => labels[k] === v);
}

/** The pod's resources and overhead together, to size its VM. */
export function sumResources(a: LinuxResources | undefined, b: LinuxResources | undefined): LinuxResources {
  const add = (x?: number, y?: number) => (x === undefined && y === undefined ? undefined : (x ?? 0) + (y ?? 0));
  const memoryLimitBytes = add(a?.memoryLimitBytes, b?.memoryLimitBytes);
  const cpuQuota = add(a?.cpuQuota, b?.cpuQuota);
  const cpuPeriod = a?.cpuPeriod ?? b?.cpuPeriod;
  return { ...(memoryLimitBytes === undefined ? {} : { memoryLimitBytes }), ...(cpuQuota === undefined ? {} : { cpuQuota }), ...(cpuPeriod === undefined ? {} : { cpuPeriod }) };
}

export function podStatusOf(r: PodRecord, sandbox: PodSandbox | undefined, booting: boolean): PodStatus {
  return {
    id: r.id,
    config: r.config,
    handler: r.handler,
    state: r.state === "ready" ? "ready" : "notready",
    createdAt: BigInt(r.createdAt),
    ...(sandbox?.ips?.[0] === undefined ? {} : { ip: sandbox.ips[0] }),
    additionalIps: sandbox?.ips?.slice(1) ?? [],
    info: { handler: r.handler, ...(sandbox ? sandbox.info() : {}), ...(booting ? { booting: true } : {}) },
  };
}

export function containerStatusOf(r: ContainerRecord): ContainerStatus {
  return {
    id: r.id,
    podId: r.podId,
    config: r.config,
    imageId: r.imageId,
    imageRef: r.imageRef,
    state: r.state,
    createdAt: BigInt(r.createdAt),
    startedAt: BigInt(r.startedAt),
    finishedAt: BigInt(r.finishedAt),
    exitCode: r.exitCode,
    reason: r.reason,
    message: r.message,
    logPath: r.logPath,
    info: { sandboxId: r.podId },
  };
}

/** A container's sample: the working set is usage less inactive file pages, as kubelet counts it. */
export function containerSample(containerId: string, podId: string, u: ContainerUsage, layer?: { readonly usedBytes: number; readonly inodesUsed: number }): ContainerStatsSample {
  const inactive = u.memoryStats.inactive_file ?? u.memoryStats.total_inactive_file ?? 0n;
  return {
    containerId,
    podId,
    timestamp: nowNs(),
    cpuUsageNs: u.cpuUsageNs,
    memoryUsageBytes: u.memoryUsageBytes,
    memoryWorkingSetBytes: u.memoryUsageBytes > inactive ? u.memoryUsageBytes - inactive : 0n,
    memoryRssBytes: u.memoryStats.anon ?? u.memoryStats.rss ?? 0n,
    memoryPageFaults: u.memoryStats.pgfault ?? 0n,
    memoryMajorPageFaults: u.memoryStats.pgmajfault ?? 0n,
    memoryLimitBytes: u.memoryLimitBytes,
    ...(layer ? { writableLayerBytes: BigInt(layer.usedBytes), writableLayerInodes: BigInt(layer.inodesUsed) } : {}),
  };
}

export function podSample(podId: string, containers: readonly ContainerStatsSample[]): PodStatsSample {
  const sum = (f: (c: ContainerStatsSample) => bigint) => containers.reduce((n, c) => n + f(c), 0n);
  return {
    podId,
    timestamp: nowNs(),
    cpuUsageNs: sum((c) => c.cpuUsageNs),
    memoryWorkingSetBytes: sum((c) => c.memoryWorkingSetBytes),
    memoryUsageBytes: sum((c) => c.memoryUsageBytes),
    processCount: BigInt(containers.length),
    containers,
  };
}

/** `promise`, or DeadlineExceeded when `signal` fires first (the work goes on). */
export async function abortable<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return promise;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new VmpodError("DeadlineExceeded", "the pod is still starting; it is kept for the next try", { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/** Whether `promise` settles within `ms` (an absent one has). */
export async function settlesWithin(promise: Promise<unknown> | undefined, ms: number): Promise<boolean> {
  if (!promise) return true;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
