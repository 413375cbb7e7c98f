/** ContainerStats: one container's usage, read from its cgroups (in the guest for VM pods). */
import type { RuntimeMethods, Unary } from "../deps.js";
import { containerStatsToCri } from "../translate-stats.js";
import { requireId } from "../validate.js";

export const containerStats: Unary<RuntimeMethods["containerStats"]> = async (deps, request) => {
  const id = requireId(request.containerId, "container_id");
  const status = deps.runtime.containerStatus(id);
  const sample = await deps.runtime.containerStats(id);
  return { stats: containerStatsToCri(sample, status, deps.rates) };
};
