/**
 * What one plugin call is given: the CNI_* environment (CNI_ARGS with the
 * Kubernetes keys kubelet's runtimes pass), and the configuration on stdin —
 * the plugin's own object with the network's name and cniVersion, the
 * runtimeConfig of the capabilities it declares, and the previous result.
 */
import { VmpodError } from "../common/errors.js";
import type { NetworkList, PluginConf } from "./cni-config.js";
import { encodeCniResult, type CniResult } from "./cni-result.js";
import type { PortMapping } from "./types.js";

export type CniCommand = "ADD" | "DEL" | "CHECK" | "VERSION";

/** A port mapping as plugins with the `portMappings` capability read it. */
export interface CniPortMapping {
  readonly hostPort: number;
  readonly containerPort: number;
  readonly protocol: string;
  readonly hostIP?: string;
}

/** Values for capabilities plugins may declare; only the ones a plugin declares reach it. */
export interface CniCapabilityArgs {
  readonly portMappings?: readonly CniPortMapping[];
}

/** One attachment of a container to the network. */
export interface CniRuntimeConf {
  readonly containerId: string;
  /** The netns path; "" for a DEL whose netns is gone. */
  readonly netnsPath: string;
  readonly ifName: string;
  readonly args: readonly (readonly [string, string])[];
  readonly capabilityArgs: CniCapabilityArgs;
}

/** CNI_ARGS of a Kubernetes pod, in the order kubelet's runtimes give them. */
export function kubernetesCniArgs(pod: { readonly name: string; readonly namespace: string; readonly uid: string }, infraContainerId: string): [string, string][] {
  return [
    ["IgnoreUnknown", "1"],
    ["K8S_POD_NAMESPACE", pod.namespace],
    ["K8S_POD_NAME", pod.name],
    ["K8S_POD_INFRA_CONTAINER_ID", infraContainerId],
    ["K8S_POD_UID", pod.uid],
  ];
}

/** "K=V;K=V". Keys and values may hold neither ";" nor "=". */
export function formatCniArgs(args: readonly (readonly [string, string])[]): string {
  for (const [k, v] of args) {
    if (k === "" || /[;=]/.test(k) || /[;=]/.test(v)) throw new VmpodError("InvalidArgument", `CNI_ARGS cannot carry ${JSON.stringify(`${k}=${v}`)}`);
  }
  return args.map(([k, v]) => `${k}=${v}`).join(";");
}

/** The CRI port mappings as CNI's `portMappings` capability: only those with a host port. */
export function cniPortMappings(mappings: readonly PortMapping[]): CniPortMapping[] {
  return mappings
    .filter((m) => m.hostPort > 0)
    .map((m) => ({ hostPort: m.hostPort, containerPort: m.containerPort, protocol: m.protocol, ...(m.hostIp !== "" ? { hostIP: m.hostIp } : {}) }));
}

/** The runtimeConfig for `plugin`: the capability values it declares and the runtime has; undefined when none. */
export function runtimeConfigFor(plugin: PluginConf, caps: CniCapabilityArgs): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const cap of plugin.capabilities) {
    const value = (caps as Record<string, unknown>)[cap];
    if (value !== undefined) out[cap] = value;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

/** The configuration a plugin reads on stdin. */
export function pluginStdin(list: NetworkList, plugin: PluginConf, caps: CniCapabilityArgs, prevResult: CniResult | undefined): string {
  const conf: Record<string, unknown> = { ...plugin.raw, name: list.name, cniVersion: list.cniVersion };
  const rc = runtimeConfigFor(plugin, caps);
  if (rc) {
    const written = plugin.raw.runtimeConfig;
    conf.runtimeConfig = { ...(written !== null && typeof written === "object" ? written : {}), ...rc };
  }
  if (prevResult !== undefined) conf.prevResult = encodeCniResult(prevResult, list.cniVersion);
  else delete conf.prevResult;
  return JSON.stringify(conf);
}

/** The CNI_* environment of one call. */
export function pluginEnv(command: CniCommand, rt: CniRuntimeConf | undefined, binDirs: readonly string[]): Record<string, string> {
  const env: Record<string, string> = { CNI_COMMAND: command, CNI_PATH: binDirs.join(":") };
  if (rt) {
    env.CNI_CONTAINERID = rt.containerId;
    env.CNI_NETNS = rt.netnsPath;
    env.CNI_IFNAME = rt.ifName;
    env.CNI_ARGS = formatCniArgs(rt.args);
  }
  return env;
}
