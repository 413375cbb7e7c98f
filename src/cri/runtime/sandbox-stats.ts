/** PodSandboxStats: one pod's usage, with its containers'. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { podStatsToCri } from "../translate-stats.js";
import { requireId } from "../validate.js";

export const podSandboxStats: Unary<RuntimeMethods["podSandboxStats"]> = async (deps, request) => {
  const id = requireId(request.podSandboxId, "pod_sandbox_id");
  const pod = deps.runtime.podStatus(id);
  const containers = new Map(deps.runtime.listContainers({ podId: id }).map((c) => [c.id, c]));
  const sample = await deps.runtime.podStats(id);
  return { stats: podStatsToCri(sample, pod, containers, deps.rates) };
};
