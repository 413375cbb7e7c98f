/**
 * The network layer as the sandbox layer uses it: one PodNetwork per daemon,
 * made from the `[cni]` configuration, and the types of its requests and
 * attachments.
 */
export { createPodNetwork, POD_IFNAME } from "./pod-network.js";
export type { GuestNic, GuestRoute, IpAddress, PodDns, PodNetwork, PodNetworkAttachment, PodNetworkRequest, PodNetworkStatus, PortMapping } from "./types.js";
