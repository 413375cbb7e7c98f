/** RemovePodSandbox: removes a pod and all its state; an unknown id succeeds. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { requireId } from "../validate.js";

export const removePodSandbox: Unary<RuntimeMethods["removePodSandbox"]> = async (deps, request) => {
  await deps.runtime.removePod(requireId(request.podSandboxId, "pod_sandbox_id"));
  return {};
};
