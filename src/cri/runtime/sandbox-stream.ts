/** StreamPodSandboxes: ListPodSandbox's answer in pages. */
import type { RuntimeMethods, Streaming } from "../deps.js";
import { pages } from "../paging.js";
import { podFilterFromCri, podToCri } from "../translate-pod.js";

export const streamPodSandboxes: Streaming<RuntimeMethods["streamPodSandboxes"]> = async function* (deps, request) {
  const items = deps.runtime.listPods(podFilterFromCri(request.filter)).map(podToCri);
  for (const page of pages(items)) yield { podSandboxes: page };
};
