/** StreamPodSandboxMetrics: no pages, as there are no metrics (see metrics.ts). */
import type { RuntimeMethods, Streaming } from "../deps.js";

export const streamPodSandboxMetrics: Streaming<RuntimeMethods["streamPodSandboxMetrics"]> = async function* () {
  yield* [];
};
