/** StopContainer: the stop signal, then SIGKILL after `timeout` seconds; idempotent. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { invalid, requireId, toNumber } from "../validate.js";

export const stopContainer: Unary<RuntimeMethods["stopContainer"]> = async (deps, request) => {
  const id = requireId(request.containerId, "container_id");
  if (request.timeout < 0n) throw invalid("timeout", `${request.timeout} is negative`);
  await deps.runtime.stopContainer(id, toNumber(request.timeout, "timeout"));
  return {};
};
