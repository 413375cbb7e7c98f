/** ContainerStatus: a container's status (NOT_FOUND when unknown), with `verbose` the runtime's details as JSON. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { containerInfoToCri, containerStatusToCri } from "../translate-container.js";
import { requireId } from "../validate.js";

export const containerStatus: Unary<RuntimeMethods["containerStatus"]> = async (deps, request) => {
  const status = deps.runtime.containerStatus(requireId(request.containerId, "container_id"));
  return { status: containerStatusToCri(status), ...(request.verbose ? { info: containerInfoToCri(status) } : {}) };
};
