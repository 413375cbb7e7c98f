/**
 * UpdatePodSandboxResources: kubelet's pod-level resize, best effort by the
 * CRI's contract. The request is checked and the pod must exist; the VM's
 * size stays what it booted with (containers' limits change through
 * UpdateContainerResources).
 */
import type { RuntimeMethods, Unary } from "../deps.js";
import { resourcesFromCri } from "../translate-resources.js";
import { requireId } from "../validate.js";

export const updatePodSandboxResources: Unary<RuntimeMethods["updatePodSandboxResources"]> = async (deps, request) => {
  const id = requireId(request.podSandboxId, "pod_sandbox_id");
  if (request.overhead !== undefined) resourcesFromCri(request.overhead, "overhead");
  if (request.resources !== undefined) resourcesFromCri(request.resources, "resources");
  deps.runtime.podStatus(id);
  deps.logger.debug("pod resources noted; the VM keeps its size", { pod: id });
  return {};
};
