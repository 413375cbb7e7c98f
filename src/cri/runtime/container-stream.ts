/** StreamContainers: ListContainers' answer in pages. */
import type { RuntimeMethods, Streaming } from "../deps.js";
import { pages } from "../paging.js";
import { containerFilterFromCri, containerToCri } from "../translate-container.js";

export const streamContainers: Streaming<RuntimeMethods["streamContainers"]> = async function* (deps, request) {
  const items = deps.runtime.listContainers(containerFilterFromCri(request.filter)).map(containerToCri);
  for (const page of pages(items)) yield { containers: page };
};
