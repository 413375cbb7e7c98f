/**
 * CreateContainer: checks the container's config at the edge (metadata,
 * image, a log path that stays in the pod's log directory, absolute mount
 * paths), then has the runtime create it in its pod. The pod's config in
 * the request is not used: the runtime keeps the one the pod was made with.
 */
import type { RuntimeMethods, Unary } from "../deps.js";
import { containerConfigFromCri } from "../translate-container.js";
import { requireId } from "../validate.js";

export const createContainer: Unary<RuntimeMethods["createContainer"]> = async (deps, request, context) => {
  const podId = requireId(request.podSandboxId, "pod_sandbox_id");
  const config = containerConfigFromCri(request.config);
  const containerId = await deps.runtime.createContainer(podId, config, { signal: context.signal });
  return { containerId };
};
