/**
 * vmpod's configuration, as the rest of the program sees it: every value
 * present (defaults applied), validated, read-only.
 */
export type MachineType = "microvm" | "q35";
export type Acceleration = "auto" | "kvm" | "tcg";
export type SharedFs = "virtio-fs" | "none";
export type BlockDeviceDriver = "virtio-scsi" | "virtio-blk";

export interface HypervisorConfig {
  /** QEMU binary. */
  readonly path: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The read-only root image (erofs) shared by every VM. */
  readonly image: string;
  readonly machineType: MachineType;
  /** Extra kernel command-line parameters, appended after vmpod's own. */
  readonly kernelParams: readonly string[];
  readonly defaultVcpus: number;
  /** MiB. */
  readonly defaultMemory: number;
  readonly accel: Acceleration;
  readonly sharedFs: SharedFs;
  /** virtiofsd binary. */
  readonly virtioFsDaemon: string;
  /** How block devices added to a running VM attach (container image layers). */
  readonly blockDeviceDriver: BlockDeviceDriver;
  /**
   * true: a container's root filesystem reaches the guest over the shared
   * directory (an overlay built on the host). false: each image layer is a
   * read-only erofs disk and the guest builds the overlay.
   */
  readonly disableBlockDeviceUse: boolean;
}

export interface AgentConfig {
  /** Milliseconds to wait for the agent to answer after the VM starts. */
  readonly dialTimeoutMs: number;
  /** Milliseconds allowed to an ordinary agent call. */
  readonly callTimeoutMs: number;
}

/** A runtime handler: pods in VMs, or host namespace containers through an OCI runtime binary. */
export type HandlerConfig = { readonly type: "vm" } | { readonly type: "oci"; readonly runtimePath: string };

export interface RuntimeConfig {
  /** Where pod and VM state lives (sockets, logs, records). */
  readonly stateRoot: string;
  readonly logLevel: "debug" | "info" | "warn" | "error";
  /** Per-layer tracing: debug-level logs, and each pod's guest console and agent log in the daemon's log. */
  readonly enableDebug: boolean;
  /** The handler of pods whose RuntimeClass names none. */
  readonly defaultHandler: string;
  /** By the name a RuntimeClass's `handler` gives. */
  readonly handlers: Readonly<Record<string, HandlerConfig>>;
}

export interface CriConfig {
  /** The CRI socket kubelet and crictl connect to. */
  readonly socket: string;
  /** host:port of the streaming server for exec, attach and port-forward (port 0: any free one). */
  readonly streamAddress: string;
  /** Milliseconds a streaming URL stays valid. */
  readonly streamTokenTtlMs: number;
}

/** How one registry host is reached. */
export interface RegistryHostConfig {
  /**
   * Endpoints tried in order before the host itself, as URLs
   * ("https://mirror.example", "http://127.0.0.1:5001").
   */
  readonly mirrors: readonly string[];
  /**
   * Speak plain HTTP to the host. Unset: plain HTTP for loopback hosts only,
   * as Docker does.
   */
  readonly plainHttp?: boolean;
  /** HTTPS without verifying the server's certificate. */
  readonly insecureSkipVerify: boolean;
  /** PEM files of the certificate authorities trusted for this host (besides the system's). */
  readonly caFiles: readonly string[];
}

export interface ImageConfig {
  /** The image store: blobs, unpacked layers, image records. */
  readonly root: string;
  /** The platform chosen from multi-platform images ("linux/amd64"). */
  readonly platform: string;
  /** Layers downloaded at once per pull. */
  readonly maxConcurrentDownloads: number;
  /** The image reported for a pod's sandbox (and pulled, pinned, where a pause process is needed). */
  readonly sandboxImage: string;
  /** Per registry host ("docker.io", "127.0.0.1:5000"). */
  readonly registries: Readonly<Record<string, RegistryHostConfig>>;
}

/**
 * How the pod's network reaches the VM inside its netns: "tcfilter", a tap
 * joined to the CNI interface by TC mirred redirects both ways; "macvtap", a
 * macvtap on the CNI interface (Kata's `internetworking_model`).
 */
export type InterNetworkingModel = "tcfilter" | "macvtap";

export interface NetworkConfig {
  /** Where CNI network configurations are read from (the lexically first one is used). */
  readonly confDir: string;
  /** Where CNI plugin binaries are searched for, in order. */
  readonly binDirs: readonly string[];
  /** Where the results of CNI ADD and the pods' network records are kept, for DEL after a restart. */
  readonly cacheDir: string;
  /** Milliseconds one CNI plugin call may take. */
  readonly pluginTimeoutMs: number;
  readonly interNetworkingModel: InterNetworkingModel;
}

/** The Prometheus endpoint (and /healthz). */
export interface MetricsConfig {
  readonly enable: boolean;
  /** host:port it listens on (port 0: any free one). */
  readonly address: string;
}

/**
 * VM templates (Kata's VM factory): pods start from a VM booted once and
 * saved, restored and personalised, instead of booting their own.
 */
export interface FactoryConfig {
  /** Restore pod VMs from a saved template (q35 with virtio-fs only); a cold boot otherwise. */
  readonly enableTemplate: boolean;
  /** Where templates are kept: one directory per template key, its saved state and manifest. */
  readonly templatePath: string;
  /** VMs restored ahead and kept waiting (not built yet: only 0 is accepted). */
  readonly vmCacheNumber: number;
}

export interface Config {
  readonly hypervisor: HypervisorConfig;
  readonly agent: AgentConfig;
  readonly runtime: RuntimeConfig;
  readonly image: ImageConfig;
  readonly cri: CriConfig;
  readonly network: NetworkConfig;
  readonly metrics: MetricsConfig;
  readonly factory: FactoryConfig;
}
