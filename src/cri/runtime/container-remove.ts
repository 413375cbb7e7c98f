/** RemoveContainer: removes a container, killing it first if it runs; an unknown id succeeds. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { requireId } from "../validate.js";

export const removeContainer: Unary<RuntimeMethods["removeContainer"]> = async (deps, request) => {
  await deps.runtime.removeContainer(requireId(request.containerId, "container_id"));
  return {};
};
