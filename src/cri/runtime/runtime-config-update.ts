/** UpdateRuntimeConfig: kubelet hands over the node's pod CIDR. */
import type { RuntimeMethods, Unary } from "../deps.js";

export const updateRuntimeConfig: Unary<RuntimeMethods["updateRuntimeConfig"]> = async (deps, request) => {
  const cidr = request.runtimeConfig?.networkConfig?.podCidr;
  if (cidr !== undefined && cidr !== "") await deps.runtime.updateRuntimeConfig(cidr);
  return {};
};
