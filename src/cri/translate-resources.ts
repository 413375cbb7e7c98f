/**
 * Resources between the CRI and the sandbox layer: LinuxContainerResources
 * (0 and empty meaning unset) to the domain's LinuxResources, and a
 * container's OCI resources back to LinuxContainerResources for its status.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { OciResources } from "../common/oci-spec.js";
import type { LinuxResources } from "../sandbox/types.js";
import type { LinuxContainerResources, LinuxContainerResourcesSchema } from "../gen/cri/api_pb.js";
import { invalid, toNumber } from "./validate.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

export function resourcesFromCri(r: LinuxContainerResources, field: string): LinuxResources {
  const out: Mutable<LinuxResources> = { oomScoreAdj: toNumber(r.oomScoreAdj, `${field}.oom_score_adj`) };
  if (r.cpuPeriod < 0n || r.cpuShares < 0n || r.memoryLimitInBytes < 0n) throw invalid(field, "cpu_period, cpu_shares and memory_limit_in_bytes cannot be negative");
  if (r.cpuPeriod !== 0n) out.cpuPeriod = toNumber(r.cpuPeriod, `${field}.cpu_period`);
  if (r.cpuQuota !== 0n) out.cpuQuota = toNumber(r.cpuQuota, `${field}.cpu_quota`);
  if (r.cpuShares !== 0n) out.cpuShares = toNumber(r.cpuShares, `${field}.cpu_shares`);
  if (r.memoryLimitInBytes !== 0n) out.memoryLimitBytes = toNumber(r.memoryLimitInBytes, `${field}.memory_limit_in_bytes`);
  if (r.memorySwapLimitInBytes !== 0n) out.memorySwapLimitBytes = toNumber(r.memorySwapLimitInBytes, `${field}.memory_swap_limit_in_bytes`);
  if (r.cpusetCpus !== "") out.cpusetCpus = r.cpusetCpus;
  if (r.cpusetMems !== "") out.cpusetMems = r.cpusetMems;
  if (r.hugepageLimits.length > 0) {
    out.hugepageLimits = r.hugepageLimits.map((h, i) => ({ pageSize: h.pageSize, limit: toNumber(h.limit, `${field}.hugepage_limits[${i}].limit`) }));
  }
  if (Object.keys(r.unified).length > 0) out.unified = { ...r.unified };
  return out;
}

export function resourcesToCri(r: LinuxResources): MessageInitShape<typeof LinuxContainerResourcesSchema> {
  return {
    cpuPeriod: BigInt(r.cpuPeriod ?? 0),
    cpuQuota: BigInt(r.cpuQuota ?? 0),
    cpuShares: BigInt(r.cpuShares ?? 0),
    memoryLimitInBytes: BigInt(r.memoryLimitBytes ?? 0),
    oomScoreAdj: BigInt(r.oomScoreAdj ?? 0),
    cpusetCpus: r.cpusetCpus ?? "",
    cpusetMems: r.cpusetMems ?? "",
    hugepageLimits: (r.hugepageLimits ?? []).map((h) => ({ pageSize: h.pageSize, limit: BigInt(h.limit) })),
    unified: { ...(r.unified ?? {}) },
    memorySwapLimitInBytes: BigInt(r.memorySwapLimitBytes ?? 0),
  };
}

/** A running container's limits as its OCI spec holds them. */
export function ociResourcesToCri(r: OciResources): MessageInitShape<typeof LinuxContainerResourcesSchema> {
  return {
    cpuPeriod: BigInt(r.cpu?.period ?? 0),
    cpuQuota: BigInt(r.cpu?.quota ?? 0),
    cpuShares: BigInt(r.cpu?.shares ?? 0),
    cpusetCpus: r.cpu?.cpus ?? "",
    cpusetMems: r.cpu?.mems ?? "",
    memoryLimitInBytes: BigInt(r.memory?.limit ?? 0),
    memorySwapLimitInBytes: BigInt(r.memory?.swap ?? 0),
  };
}
