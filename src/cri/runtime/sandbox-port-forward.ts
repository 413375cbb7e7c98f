/** PortForward: a single-use streaming URL to ports of a ready pod (inside its VM). */
import { VmpodError } from "../../common/errors.js";
import type { RuntimeMethods, Unary } from "../deps.js";
import { port, requireId } from "../validate.js";

export const portForward: Unary<RuntimeMethods["portForward"]> = async (deps, request) => {
  const podId = requireId(request.podSandboxId, "pod_sandbox_id");
  const ports = request.port.map((p, i) => port(p, `port[${i}]`, { zero: false }));
  const pod = deps.runtime.podStatus(podId);
  if (pod.state !== "ready") throw new VmpodError("FailedPrecondition", `pod ${podId} is not ready`);
  return { url: deps.streaming.portForwardUrl({ podId, ports }) };
};
