/**
 * PodSandboxStatus: a pod's status (NOT_FOUND when unknown), its
 * containers' statuses and the time they were taken (which evented PLEG
 * reads), and with `verbose` the runtime's details as JSON.
 */
import type { RuntimeMethods, Unary } from "../deps.js";
import { containerStatusToCri } from "../translate-container.js";
import { podInfoToCri, podStatusToCri } from "../translate-pod.js";
import { nowNs } from "../time.js";
import { requireId } from "../validate.js";

export const podSandboxStatus: Unary<RuntimeMethods["podSandboxStatus"]> = async (deps, request) => {
  const pod = deps.runtime.podStatus(requireId(request.podSandboxId, "pod_sandbox_id"));
  const containers = deps.runtime.listContainers({ podId: pod.id });
  return {
    status: podStatusToCri(pod),
    ...(request.verbose ? { info: podInfoToCri(pod) } : {}),
    containersStatuses: containers.map(containerStatusToCri),
    timestamp: nowNs(),
  };
};
