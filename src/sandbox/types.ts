/**
 * Pods and containers as the sandbox layer sees them: the CRI's
 * configuration, translated at the CRI edge (src/cri/translate*.ts) into
 * these plain types, and the state the layer keeps and reports.
 */
import type { OciResources } from "../common/oci-spec.js";

export interface PodMetadata {
  readonly name: string;
  readonly uid: string;
  readonly namespace: string;
  readonly attempt: number;
}

export interface DnsConfig {
  readonly servers: readonly string[];
  readonly searches: readonly string[];
  readonly options: readonly string[];
}

export interface PortMapping {
  readonly protocol: "TCP" | "UDP" | "SCTP";
  readonly containerPort: number;
  readonly hostPort: number;
  readonly hostIp: string;
}

export type NamespaceMode = "POD" | "CONTAINER" | "NODE" | "TARGET";

export interface LinuxResources {
  readonly cpuPeriod?: number;
  readonly cpuQuota?: number;
  readonly cpuShares?: number;
  readonly memoryLimitBytes?: number;
  readonly oomScoreAdj?: number;
  readonly cpusetCpus?: string;
  readonly cpusetMems?: string;
  readonly hugepageLimits?: readonly { readonly pageSize: string; readonly limit: number }[];
  readonly unified?: Readonly<Record<string, string>>;
  readonly memorySwapLimitBytes?: number;
}

/** What kubelet asks of a pod (RunPodSandbox's PodSandboxConfig). */
export interface PodConfig {
  readonly metadata: PodMetadata;
  readonly hostname: string;
  /** Absolute; the containers' log paths are relative to it. */
  readonly logDirectory: string;
  readonly dns?: DnsConfig;
  readonly portMappings: readonly PortMapping[];
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly cgroupParent: string;
  readonly namespaces: { readonly network: NamespaceMode; readonly pid: NamespaceMode; readonly ipc: NamespaceMode };
  readonly sysctls: Readonly<Record<string, string>>;
  /** The pod's overhead and the sum of its containers' resources, as kubelet gives them. */
  readonly overhead?: LinuxResources;
  readonly resources?: LinuxResources;
  readonly privileged: boolean;
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly supplementalGroups: readonly number[];
  readonly readonlyRootfs: boolean;
  readonly seccomp?: SecurityProfile;
}

export interface ContainerMetadata {
  readonly name: string;
  readonly attempt: number;
}

export interface Mount {
  readonly containerPath: string;
  readonly hostPath: string;
  readonly readonly: boolean;
  readonly selinuxRelabel: boolean;
  readonly propagation: "private" | "host-to-container" | "bidirectional";
}

export interface DeviceMapping {
  readonly containerPath: string;
  readonly hostPath: string;
  readonly permissions: string;
}

export interface SecurityProfile {
  readonly type: "runtime-default" | "unconfined" | "localhost";
  readonly localhostRef?: string;
}

export interface ContainerSecurity {
  readonly capabilities?: { readonly add: readonly string[]; readonly drop: readonly string[]; readonly addAmbient: readonly string[] };
  readonly privileged: boolean;
  readonly namespaces: { readonly network: NamespaceMode; readonly pid: NamespaceMode; readonly ipc: NamespaceMode; readonly targetId?: string };
  readonly runAsUser?: number;
  readonly runAsGroup?: number;
  readonly runAsUsername?: string;
  readonly readonlyRootfs: boolean;
  readonly supplementalGroups: readonly number[];
  readonly noNewPrivs: boolean;
  readonly maskedPaths?: readonly string[];
  readonly readonlyPaths?: readonly string[];
  readonly seccomp?: SecurityProfile;
  readonly apparmor?: SecurityProfile;
}

/** What kubelet asks of a container (CreateContainer's ContainerConfig). */
export interface ContainerConfig {
  readonly metadata: ContainerMetadata;
  /** The image as kubelet names it (a reference or an id). */
  readonly image: string;
  readonly command: readonly string[];
  readonly args: readonly string[];
  readonly workingDir: string;
  readonly envs: readonly { readonly key: string; readonly value: string }[];
  readonly mounts: readonly Mount[];
  readonly devices: readonly DeviceMapping[];
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  /** Relative to the pod's log directory. */
  readonly logPath: string;
  readonly stdin: boolean;
  readonly stdinOnce: boolean;
  readonly tty: boolean;
  readonly resources?: LinuxResources;
  readonly security: ContainerSecurity;
  readonly stopSignal?: string;
}

export type PodState = "ready" | "notready";
export type ContainerState = "created" | "running" | "exited" | "unknown";

/** A pod as the sandbox layer reports it. */
export interface PodStatus {
  readonly id: string;
  readonly config: PodConfig;
  readonly handler: string;
  readonly state: PodState;
  /** Nanoseconds since the epoch. */
  readonly createdAt: bigint;
  readonly ip?: string;
  readonly additionalIps: readonly string[];
  /** Free-form details for verbose status (the VM's pid, its acceleration, ...). */
  readonly info: Readonly<Record<string, unknown>>;
}

/** A container as the sandbox layer reports it. */
export interface ContainerStatus {
  readonly id: string;
  readonly podId: string;
  readonly config: ContainerConfig;
  readonly imageId: string;
  readonly imageRef: string;
  readonly state: ContainerState;
  /** Nanoseconds since the epoch; 0 when not yet. */
  readonly createdAt: bigint;
  readonly startedAt: bigint;
  readonly finishedAt: bigint;
  readonly exitCode: number;
  /** "Completed", "Error", "OOMKilled", or "" while running. */
  readonly reason: string;
  readonly message: string;
  /** Absolute. */
  readonly logPath: string;
  readonly resources?: OciResources;
  readonly info: Readonly<Record<string, unknown>>;
}

export interface ContainerEvent {
  readonly type: "created" | "started" | "stopped" | "deleted";
  readonly containerId: string;
  readonly podId: string;
  /** Nanoseconds since the epoch. */
  readonly at: bigint;
}
