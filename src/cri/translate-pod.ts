/**
 * Pods between the CRI and the sandbox layer: PodSandboxConfig checked and
 * turned into a PodConfig, and a PodStatus back into the CRI's status, list
 * item and filter. Metadata, labels and annotations come back exactly as
 * kubelet gave them.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  PodSandboxState,
  Protocol,
  type PodSandboxConfig,
  type PodSandboxFilter,
  type PodSandboxSchema,
  type PodSandboxStatsFilter,
  type PodSandboxStatusSchema,
  type PodSandboxMetadataSchema,
} from "../gen/cri/api_pb.js";
import type { PodFilter } from "../sandbox/runtime.js";
import type { DnsConfig, PodConfig, PodMetadata, PodState, PodStatus, PortMapping } from "../sandbox/types.js";
import { resourcesFromCri } from "./translate-resources.js";
import { idList, namespaceModeToCri, namespacesFromCri, optionalId, profileFromCri } from "./translate-security.js";
import { absolutePath, invalid, nonEmpty, port, required } from "./validate.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const PROTOCOLS: Readonly<Record<Protocol, PortMapping["protocol"]>> = { [Protocol.TCP]: "TCP", [Protocol.UDP]: "UDP", [Protocol.SCTP]: "SCTP" };

/** Checks a RunPodSandbox (or CreateContainer, PullImage) pod config and translates it. */
export function podConfigFromCri(config: PodSandboxConfig | undefined, field = "config"): PodConfig {
  const c = required(config, field);
  const m = required(c.metadata, `${field}.metadata`);
  const metadata: PodMetadata = {
    name: nonEmpty(m.name, `${field}.metadata.name`),
    uid: nonEmpty(m.uid, `${field}.metadata.uid`),
    namespace: nonEmpty(m.namespace, `${field}.metadata.namespace`),
    attempt: m.attempt,
  };
  if (c.logDirectory !== "") absolutePath(c.logDirectory, `${field}.log_directory`);
  const portMappings = c.portMappings.map((p, i): PortMapping => {
    const protocol = PROTOCOLS[p.protocol];
    if (protocol === undefined) throw invalid(`${field}.port_mappings[${i}].protocol`, `unknown protocol ${p.protocol}`);
    return {
      protocol,
      containerPort: port(p.containerPort, `${field}.port_mappings[${i}].container_port`, { zero: false }),
      hostPort: port(p.hostPort, `${field}.port_mappings[${i}].host_port`, { zero: true }),
      hostIp: p.hostIp,
    };
  });
  const linux = c.linux;
  const security = linux?.securityContext;
  const namespaces = namespacesFromCri(security?.namespaceOptions, `${field}.linux.security_context.namespace_options`);
  const out: Mutable<PodConfig> = {
    metadata,
    hostname: c.hostname,
    logDirectory: c.logDirectory,
    portMappings,
    labels: { ...c.labels },
    annotations: { ...c.annotations },
    cgroupParent: linux?.cgroupParent ?? "",
    namespaces: { network: namespaces.network, pid: namespaces.pid, ipc: namespaces.ipc },
    sysctls: { ...(linux?.sysctls ?? {}) },
    privileged: security?.privileged ?? false,
    supplementalGroups: idList(security?.supplementalGroups ?? [], `${field}.linux.security_context.supplemental_groups`),
    readonlyRootfs: security?.readonlyRootfs ?? false,
  };
  if (c.dnsConfig !== undefined) out.dns = dnsFromCri(c.dnsConfig);
  if (linux?.overhead !== undefined) out.overhead = resourcesFromCri(linux.overhead, `${field}.linux.overhead`);
  if (linux?.resources !== undefined) out.resources = resourcesFromCri(linux.resources, `${field}.linux.resources`);
  if (security !== undefined) {
    const user = optionalId(security.runAsUser, `${field}.linux.security_context.run_as_user`);
    const group = optionalId(security.runAsGroup, `${field}.linux.security_context.run_as_group`);
    if (group !== undefined && user === undefined) throw invalid(`${field}.linux.security_context.run_as_group`, "is set without run_as_user");
    if (user !== undefined) out.runAsUser = user;
    if (group !== undefined) out.runAsGroup = group;
    const seccomp = profileFromCri(security.seccomp, security.seccompProfilePath, `${field}.linux.security_context.seccomp`);
    if (seccomp !== undefined) out.seccomp = seccomp;
  }
  return out;
}

export function dnsFromCri(dns: { readonly servers: readonly string[]; readonly searches: readonly string[]; readonly options: readonly string[] }): DnsConfig {
  return { servers: [...dns.servers], searches: [...dns.searches], options: [...dns.options] };
}

export function podStateToCri(state: PodState): PodSandboxState {
  return state === "ready" ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
}

export function podMetadataToCri(m: PodMetadata): MessageInitShape<typeof PodSandboxMetadataSchema> {
  return { name: m.name, uid: m.uid, namespace: m.namespace, attempt: m.attempt };
}

export function podStatusToCri(pod: PodStatus): MessageInitShape<typeof PodSandboxStatusSchema> {
  const ns = pod.config.namespaces;
  return {
    id: pod.id,
    metadata: podMetadataToCri(pod.config.metadata),
    state: podStateToCri(pod.state),
    createdAt: pod.createdAt,
    network: { ip: pod.ip ?? "", additionalIps: pod.additionalIps.map((ip) => ({ ip })) },
    linux: { namespaces: { options: { network: namespaceModeToCri(ns.network), pid: namespaceModeToCri(ns.pid), ipc: namespaceModeToCri(ns.ipc) } } },
    labels: { ...pod.config.labels },
    annotations: { ...pod.config.annotations },
    runtimeHandler: pod.handler,
  };
}

export function podToCri(pod: PodStatus): MessageInitShape<typeof PodSandboxSchema> {
  return {
    id: pod.id,
    metadata: podMetadataToCri(pod.config.metadata),
    state: podStateToCri(pod.state),
    createdAt: pod.createdAt,
    labels: { ...pod.config.labels },
    annotations: { ...pod.config.annotations },
    runtimeHandler: pod.handler,
  };
}

/** Verbose info: one key, "info", holding JSON (what crictl inspectp shows). */
export function podInfoToCri(pod: PodStatus): Record<string, string> {
  return { info: JSON.stringify({ ...pod.info, runtimeHandler: pod.handler, config: pod.config }, jsonReplacer) };
}

export function jsonReplacer(_key: string, value: unknown): unknown {
  return typeof value === "bigint" ? value.toString() : value;
}

export function podFilterFromCri(filter: PodSandboxFilter | PodSandboxStatsFilter | undefined): PodFilter | undefined {
  if (filter === undefined) return undefined;
  const out: Mutable<PodFilter> = {};
  if (filter.id !== "") out.id = filter.id;
  if ("state" in filter && filter.state !== undefined) out.state = filter.state.state === PodSandboxState.SANDBOX_READY ? "ready" : "notready";
  if (Object.keys(filter.labelSelector).length > 0) out.labels = { ...filter.labelSelector };
  return out;
}
