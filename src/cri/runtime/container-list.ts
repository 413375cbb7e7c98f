/** ListContainers: the containers matching the filter (id, pod, state, labels). */
import type { RuntimeMethods, Unary } from "../deps.js";
import { containerFilterFromCri, containerToCri } from "../translate-container.js";

export const listContainers: Unary<RuntimeMethods["listContainers"]> = async (deps, request) => ({
  containers: deps.runtime.listContainers(containerFilterFromCri(request.filter)).map(containerToCri),
});
