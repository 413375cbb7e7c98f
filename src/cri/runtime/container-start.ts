/** StartContainer: starts a created container. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { requireId } from "../validate.js";

export const startContainer: Unary<RuntimeMethods["startContainer"]> = async (deps, request) => {
  await deps.runtime.startContainer(requireId(request.containerId, "container_id"));
  return {};
};
