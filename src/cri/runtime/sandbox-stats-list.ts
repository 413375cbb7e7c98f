/** ListPodSandboxStats: usage of the pods matching the filter (id, labels). */
import type { CriDeps, RuntimeMethods, Unary } from "../deps.js";
import type { PodSandboxStatsFilter } from "../../gen/cri/api_pb.js";
import { nowNs } from "../time.js";
import { podFilterFromCri } from "../translate-pod.js";
import { podStatsToCri } from "../translate-stats.js";

export async function collectPodStats(deps: CriDeps, filter: PodSandboxStatsFilter | undefined) {
  const domainFilter = podFilterFromCri(filter);
  const pods = new Map(deps.runtime.listPods(domainFilter).map((p) => [p.id, p]));
  const containers = new Map(deps.runtime.listContainers().map((c) => [c.id, c]));
  const samples = await deps.runtime.listPodStats(domainFilter);
  const stats = samples.map((s) => podStatsToCri(s, pods.get(s.podId), containers, deps.rates));
  deps.rates.prune(nowNs());
  return stats;
}

export const listPodSandboxStats: Unary<RuntimeMethods["listPodSandboxStats"]> = async (deps, request) => ({
  stats: await collectPodStats(deps, request.filter),
});
