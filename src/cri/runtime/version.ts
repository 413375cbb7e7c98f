/** Version: vmpod's name and version, and the CRI version it speaks. */
import type { RuntimeMethods, Unary } from "../deps.js";

/** The kubelet runtime API version runtimes answer with. */
const KUBELET_API_VERSION = "0.1.0";

export const version: Unary<RuntimeMethods["version"]> = async (deps) => ({
  version: KUBELET_API_VERSION,
  runtimeName: "vmpod",
  runtimeVersion: deps.version,
  runtimeApiVersion: "v1",
});
