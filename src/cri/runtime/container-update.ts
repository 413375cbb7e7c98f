/** UpdateContainerResources: new cgroup limits for a container, applied while it runs. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { resourcesFromCri } from "../translate-resources.js";
import { required, requireId } from "../validate.js";

export const updateContainerResources: Unary<RuntimeMethods["updateContainerResources"]> = async (deps, request) => {
  const id = requireId(request.containerId, "container_id");
  const resources = resourcesFromCri(required(request.linux, "linux"), "linux");
  await deps.runtime.updateContainer(id, resources);
  return {};
};
