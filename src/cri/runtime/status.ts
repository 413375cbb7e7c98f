/**
 * Status: RuntimeReady and NetworkReady (with a reason when false), the
 * runtime handlers with what each supports, and with `verbose` the
 * daemon's facts as JSON (what crictl info shows).
 */
import type { RuntimeMethods, Unary } from "../deps.js";

/** Neither recursive read-only mounts nor user namespaces: the VM is the boundary. */
const HANDLER_FEATURES = { recursiveReadOnlyMounts: false, userNamespaces: false };

export const status: Unary<RuntimeMethods["status"]> = async (deps, request) => {
  const conditions = (await deps.runtime.conditions()).map((c) => ({ type: c.type, status: c.status, reason: c.reason, message: c.message }));
  // The empty name stands for the default handler, as kubelet asks for it.
  const runtimeHandlers = ["", ...deps.runtime.handlers].map((name) => ({ name, features: HANDLER_FEATURES }));
  return {
    status: { conditions },
    runtimeHandlers,
    features: { supplementalGroupsPolicy: false, userNamespacesHostNetwork: false },
    ...(request.verbose
      ? { info: { info: JSON.stringify({ runtimeName: "vmpod", runtimeVersion: deps.version, handlers: deps.runtime.handlers, defaultHandler: deps.runtime.handlers[0] ?? "", conditions }) } }
      : {}),
  };
};
