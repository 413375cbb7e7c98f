/**
 * RunPodSandbox: checks the pod's config and runtime handler at the edge,
 * then has the runtime make the pod (for the vmpod handler, boot its VM).
 * An empty handler is left to the runtime, which picks the default one, or
 * the VM handler for a pod marked untrusted; an unknown one is INVALID_ARGUMENT.
 */
import type { RuntimeMethods, Unary } from "../deps.js";
import { podConfigFromCri } from "../translate-pod.js";
import { invalid } from "../validate.js";

export function resolveHandler(handlers: readonly string[], requested: string, field: string): string {
  if (requested === "") return "";
  if (!handlers.includes(requested)) throw invalid(field, `unknown runtime handler ${JSON.stringify(requested)} (configured: ${handlers.join(", ")})`);
  return requested;
}

export const runPodSandbox: Unary<RuntimeMethods["runPodSandbox"]> = async (deps, request, context) => {
  const config = podConfigFromCri(request.config);
  const handler = resolveHandler(deps.runtime.handlers, request.runtimeHandler, "runtime_handler");
  const podSandboxId = await deps.runtime.runPod(config, handler, { signal: context.signal });
  return { podSandboxId };
};
