/** ListPodSandboxMetrics: none (see metrics.ts). */
import type { RuntimeMethods, Unary } from "../deps.js";

export const listPodSandboxMetrics: Unary<RuntimeMethods["listPodSandboxMetrics"]> = async () => ({ podMetrics: [] });
