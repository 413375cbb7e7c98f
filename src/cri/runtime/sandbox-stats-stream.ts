/** StreamPodSandboxStats: ListPodSandboxStats' answer in pages. */
import type { RuntimeMethods, Streaming } from "../deps.js";
import { pages } from "../paging.js";
import { collectPodStats } from "./sandbox-stats-list.js";

export const streamPodSandboxStats: Streaming<RuntimeMethods["streamPodSandboxStats"]> = async function* (deps, request) {
  for (const page of pages(await collectPodStats(deps, request.filter))) yield { podSandboxStats: page };
};
