/**
 * What the network layer needs to know of a pod (runtime handlers ask it
 * for a pod's network): its id and names, and its port mappings in CNI's
 * terms.
 */
import { VmpodError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { PodNetwork, PodNetworkRequest, PortMapping as NetworkPortMapping } from "../network/types.js";
import type { PodCreateRequest } from "./controller.js";
import type { PortMapping } from "./types.js";

/** What the network layer needs of a pod. */
export function podNetworkRequest(request: PodCreateRequest, options: { readonly vmLink?: boolean } = {}): PodNetworkRequest {
  const { metadata } = request.config;
  return {
    podId: request.id,
    name: metadata.name,
    namespace: metadata.namespace,
    uid: metadata.uid,
    portMappings: request.config.portMappings.map(portMappingOf),
    ...(options.vmLink === undefined ? {} : { vmLink: options.vmLink }),
    ...(request.signal ? { signal: request.signal } : {}),
  };
}

/** CRI's port mapping in CNI's terms. */
function portMappingOf(m: PortMapping): NetworkPortMapping {
  return { protocol: m.protocol === "UDP" ? "udp" : m.protocol === "SCTP" ? "sctp" : "tcp", containerPort: m.containerPort, hostPort: m.hostPort, hostIp: m.hostIp };
}

/**
 * The network a pod is to be given, or undefined when it runs without one:
 * while CNI is not ready (NetworkReady is false, so kubelet starts only
 * host-network pods) a pod gets loopback alone, unless it maps host ports,
 * which need a network and are refused.
 */
export async function usableNetwork(network: PodNetwork | undefined, request: PodCreateRequest, logger: Logger): Promise<PodNetwork | undefined> {
  const { config } = request;
  const status = network ? await network.status() : { ready: false, message: "no pod network is configured" };
  if (network && status.ready) return network;
  const why = status.message ?? "CNI is not ready";
  if (config.portMappings.some((m) => m.hostPort > 0)) {
    throw new VmpodError("FailedPrecondition", `pod ${config.metadata.namespace}/${config.metadata.name} maps host ports, which needs a pod network: ${why}`);
  }
  logger.warn("pod runs without a network", { pod: request.id, reason: why });
  return undefined;
}
