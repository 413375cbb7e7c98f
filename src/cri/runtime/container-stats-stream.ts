/** StreamContainerStats: ListContainerStats' answer in pages. */
import type { RuntimeMethods, Streaming } from "../deps.js";
import { pages } from "../paging.js";
import { collectContainerStats } from "./container-stats-list.js";

export const streamContainerStats: Streaming<RuntimeMethods["streamContainerStats"]> = async function* (deps, request) {
  for (const page of pages(await collectContainerStats(deps, request.filter))) yield { containerStats: page };
};
