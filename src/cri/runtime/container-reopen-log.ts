/** ReopenContainerLog: the container's log is written to a fresh file after kubelet rotated the old one. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { requireId } from "../validate.js";

export const reopenContainerLog: Unary<RuntimeMethods["reopenContainerLog"]> = async (deps, request) => {
  await deps.runtime.reopenContainerLog(requireId(request.containerId, "container_id"));
  return {};
};
