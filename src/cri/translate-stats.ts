/**
 * Stats between the sandbox layer and the CRI: a container's or pod's
 * sample with the attributes kubelet matches them by (metadata, labels,
 * annotations). The CPU rate (usage_nano_cores), which metrics-server
 * reads, comes from the previous sample of the same container or pod.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ContainerStatsSchema, PodSandboxStatsSchema } from "../gen/cri/api_pb.js";
import type { ContainerStatsSample, PodStatsSample } from "../sandbox/runtime.js";
import type { ContainerStatus, PodStatus } from "../sandbox/types.js";
import { podMetadataToCri } from "./translate-pod.js";

/** Samples older than this are dropped: their container or pod is likely gone. */
const FORGET_AFTER_NS = 10n * 60n * 1_000_000_000n;

/** CPU rates from successive cumulative samples, by container or pod id. */
export class CpuRates {
  private readonly last = new Map<string, { readonly at: bigint; readonly cpu: bigint }>();

  /** Nanocores since the previous sample of `key`, or undefined for the first one. */
  rate(key: string, at: bigint, cpuNs: bigint): bigint | undefined {
    const previous = this.last.get(key);
    if (previous === undefined || at > previous.at) this.last.set(key, { at, cpu: cpuNs });
    if (previous === undefined || at <= previous.at || cpuNs < previous.cpu) return undefined;
    return ((cpuNs - previous.cpu) * 1_000_000_000n) / (at - previous.at);
  }

  /** Drops samples older than ten minutes before `now` (ns). */
  prune(now: bigint): void {
    for (const [key, sample] of this.last) if (now - sample.at > FORGET_AFTER_NS) this.last.delete(key);
  }

  get size(): number {
    return this.last.size;
  }
}

const u64 = (value: bigint) => ({ value: value < 0n ? 0n : value });

export function containerStatsToCri(sample: ContainerStatsSample, status: ContainerStatus | undefined, rates: CpuRates): MessageInitShape<typeof ContainerStatsSchema> {
  const t = sample.timestamp;
  const nanoCores = rates.rate(`c:${sample.containerId}`, t, sample.cpuUsageNs);
  const limited = sample.memoryLimitBytes > 0n && sample.memoryLimitBytes < 1n << 62n;
  return {
    attributes: {
      id: sample.containerId,
      ...(status === undefined
        ? {}
        : { metadata: { name: status.config.metadata.name, attempt: status.config.metadata.attempt }, labels: { ...status.config.labels }, annotations: { ...status.config.annotations } }),
    },
    cpu: { timestamp: t, usageCoreNanoSeconds: u64(sample.cpuUsageNs), ...(nanoCores === undefined ? {} : { usageNanoCores: u64(nanoCores) }) },
    memory: {
      timestamp: t,
      workingSetBytes: u64(sample.memoryWorkingSetBytes),
      ...(limited ? { availableBytes: u64(sample.memoryLimitBytes - sample.memoryWorkingSetBytes) } : {}),
      usageBytes: u64(sample.memoryUsageBytes),
      rssBytes: u64(sample.memoryRssBytes),
      pageFaults: u64(sample.memoryPageFaults),
      majorPageFaults: u64(sample.memoryMajorPageFaults),
    },
    ...(sample.writableLayerBytes === undefined
      ? {}
      : {
          writableLayer: {
            timestamp: t,
            usedBytes: u64(sample.writableLayerBytes),
            ...(sample.writableLayerInodes === undefined ? {} : { inodesUsed: u64(sample.writableLayerInodes) }),
          },
        }),
  };
}

export function podStatsToCri(
  sample: PodStatsSample,
  pod: PodStatus | undefined,
  containers: ReadonlyMap<string, ContainerStatus>,
  rates: CpuRates,
): MessageInitShape<typeof PodSandboxStatsSchema> {
  const t = sample.timestamp;
  const nanoCores = rates.rate(`p:${sample.podId}`, t, sample.cpuUsageNs);
  return {
    attributes: {
      id: sample.podId,
      ...(pod === undefined ? {} : { metadata: podMetadataToCri(pod.config.metadata), labels: { ...pod.config.labels }, annotations: { ...pod.config.annotations } }),
    },
    linux: {
      cpu: { timestamp: t, usageCoreNanoSeconds: u64(sample.cpuUsageNs), ...(nanoCores === undefined ? {} : { usageNanoCores: u64(nanoCores) }) },
      memory: { timestamp: t, workingSetBytes: u64(sample.memoryWorkingSetBytes), usageBytes: u64(sample.memoryUsageBytes) },
      process: { timestamp: t, processCount: u64(sample.processCount) },
      containers: sample.containers.map((c) => containerStatsToCri(c, containers.get(c.containerId), rates)),
    },
  };
}
