/** ListContainerStats: usage of the containers matching the filter (id, pod, labels). */
import type { CriDeps, RuntimeMethods, Unary } from "../deps.js";
import type { ContainerStatsFilter } from "../../gen/cri/api_pb.js";
import { nowNs } from "../time.js";
import { containerFilterFromCri } from "../translate-container.js";
import { containerStatsToCri } from "../translate-stats.js";

export async function collectContainerStats(deps: CriDeps, filter: ContainerStatsFilter | undefined) {
  const domainFilter = containerFilterFromCri(filter);
  const statuses = new Map(deps.runtime.listContainers(domainFilter).map((c) => [c.id, c]));
  const samples = await deps.runtime.listContainerStats(domainFilter);
  const stats = samples.map((s) => containerStatsToCri(s, statuses.get(s.containerId), deps.rates));
  deps.rates.prune(nowNs());
  return stats;
}

export const listContainerStats: Unary<RuntimeMethods["listContainerStats"]> = async (deps, request) => ({
  stats: await collectContainerStats(deps, request.filter),
});
