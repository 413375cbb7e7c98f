/** StopPodSandbox: stops a pod's containers and its VM; an unknown id succeeds. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { requireId } from "../validate.js";

export const stopPodSandbox: Unary<RuntimeMethods["stopPodSandbox"]> = async (deps, request) => {
  await deps.runtime.stopPod(requireId(request.podSandboxId, "pod_sandbox_id"));
  return {};
};
