/**
 * What the network layer hands the sandbox layer: the request for a pod's
 * network, and the attachment the VM is built from (its tap, and the NIC,
 * addresses and routes the guest agent gives the guest's interface).
 */

export interface PortMapping {
  readonly protocol: "tcp" | "udp" | "sctp";
  readonly containerPort: number;
  /** 0: no port on the host (kubelet passes such mappings for the record). */
  readonly hostPort: number;
  /** "" for every host address. */
  readonly hostIp: string;
}

export interface PodNetworkRequest {
  /** 64 hex characters. */
  readonly podId: string;
  readonly name: string;
  readonly namespace: string;
  readonly uid: string;
  readonly portMappings: readonly PortMapping[];
  /**
   * Whether a VM joins the netns (a tap or macvtap made for it); true unless
   * said otherwise. False for containers that run in the netns itself.
   */
  readonly vmLink?: boolean;
  readonly signal?: AbortSignal;
}

export interface IpAddress {
  readonly family: 4 | 6;
  readonly address: string;
  readonly prefixLength: number;
}

/** The guest's interface: it takes over the identity of the pod's CNI interface. */
export interface GuestNic {
  /** "eth0" */
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly addresses: readonly IpAddress[];
}

export interface GuestRoute {
  readonly family: 4 | 6;
  /** "0.0.0.0/0", "10.88.0.0/16" */
  readonly destination: string;
  readonly gateway?: string;
  readonly device: string;
  readonly scope?: "link" | "universe";
}

export interface PodDns {
  readonly nameservers: readonly string[];
  readonly search: readonly string[];
  readonly options: readonly string[];
}

export interface PodNetworkAttachment {
  readonly netnsPath: string;
  readonly nic: GuestNic;
  readonly routes: readonly GuestRoute[];
  readonly dns?: PodDns;
  /**
   * The tap (or macvtap) for QEMU's `-netdev tap,fd=`; the caller closes it
   * once QEMU has it (or on failure). Absent when the request asked for no VM link.
   */
  readonly tapFd?: number;
  /** Pod IPs, first the primary (IPv4 first when both). */
  readonly ips: readonly string[];
}

export interface PodNetworkStatus {
  readonly ready: boolean;
  /** "NetworkPluginNotReady" when not ready. */
  readonly reason?: string;
  readonly message?: string;
}

export interface PodNetwork {
  /** NetworkReady: false with reason NetworkPluginNotReady while no usable CNI configuration or a plugin is missing. */
  status(): Promise<PodNetworkStatus>;
  /** netns + CNI ADD + tap + redirects; undoes its own steps on failure. */
  setUp(request: PodNetworkRequest): Promise<PodNetworkAttachment>;
  /** The attachment of a pod set up before (after a daemon restart), without the tap fd; undefined if none. */
  find(podId: string): Promise<Omit<PodNetworkAttachment, "tapFd"> | undefined>;
  /** Pod ids with a network record on disk (set up, or half set up before a crash), for reconciling at start-up. */
  list(): Promise<string[]>;
  /** Redirects, CNI DEL, netns; idempotent; works from the records on disk after a restart. */
  tearDown(podId: string): Promise<void>;
}
