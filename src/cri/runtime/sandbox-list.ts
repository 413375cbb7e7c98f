/** ListPodSandbox: the pods matching the filter (id, state, labels). */
import type { RuntimeMethods, Unary } from "../deps.js";
import { podFilterFromCri, podToCri } from "../translate-pod.js";

export const listPodSandbox: Unary<RuntimeMethods["listPodSandbox"]> = async (deps, request) => ({
  items: deps.runtime.listPods(podFilterFromCri(request.filter)).map(podToCri),
});
