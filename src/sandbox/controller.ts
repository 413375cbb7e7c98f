/**
 * One runtime handler's pods: a `SandboxController` makes and recovers
 * them, a `PodSandbox` is one of them with its containers. The VM handler
 * (vm-controller.ts, a PodVm per pod) and the runc handler (runc/, host
 * namespace containers) implement these; the PodManager keeps them in a map
 * by handler name and knows nothing of either.
 */
import type { Duplex } from "node:stream";
import type { OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import type { RootfsLayers } from "../image/types.js";
import type { ProcessIo } from "./process-io.js";
import type { DnsConfig, LinuxResources, PodConfig } from "./types.js";

/** Cgroup figures of one container, as its runtime reads them. */
export interface ContainerUsage {
  readonly cpuUsageNs: bigint;
  readonly memoryUsageBytes: bigint;
  readonly memoryLimitBytes: bigint;
  /** memory.stat counters (anon, file, inactive_file, pgfault, pgmajfault, ...). */
  readonly memoryStats: Readonly<Record<string, bigint>>;
  readonly pids: bigint;
}

/** A host path a container mounts, and where the container's runtime sees it. */
export interface SharedMount {
  readonly hostPath: string;
  readonly readonly: boolean;
}

export interface PodSandbox {
  readonly id: string;
  readonly handler: string;
  /** Resolves when the pod's VM (or equivalent) is gone, whoever stopped it. */
  readonly gone: Promise<void>;
  /** The pod's IP addresses, the primary first; absent or empty for a pod without a network of its own. */
  readonly ips?: readonly string[];
  /** Free-form facts for verbose status (pid, acceleration, ...). */
  info(): Readonly<Record<string, unknown>>;

  /**
   * Makes a host path visible to the pod's containers; returns the path to
   * use as the source of a bind mount in the container's OCI spec.
   */
  shareMount(containerId: string, index: number, mount: SharedMount): Promise<string>;
  /**
   * The pod's namespaces as paths, for containers that join them (host
   * namespace pods); absent where the runtime gives the containers their
   * namespaces itself (a VM's).
   */
  readonly namespacePaths?: { readonly network?: string; readonly ipc?: string; readonly uts?: string };
  /** The pod's /etc/hostname, /etc/resolv.conf and /etc/hosts, as paths its containers' runtime sees. */
  readonly podFiles?: { readonly hostname?: string; readonly resolvConf?: string; readonly hosts?: string };
  /** Whether containers' image layers should come as erofs images (ask the image service). */
  readonly wantsBlockImages: boolean;
  createContainer(containerId: string, rootfs: RootfsLayers, spec: OciSpec, options: { readonly readonlyRootfs: boolean }): Promise<void>;
  startContainer(containerId: string): Promise<void>;
  /** The streams of the container's first process (execId "") or of an exec. */
  io(containerId: string, execId: string, options: { readonly stdin: boolean; readonly terminal: boolean }): ProcessIo;
  exec(containerId: string, execId: string, process: OciProcess, options: { readonly stdin: boolean }): Promise<ProcessIo>;
  signal(containerId: string, execId: string, signal: number): Promise<void>;
  /** The exit status: the code, or 128 + signal. */
  wait(containerId: string, execId: string, options?: { readonly signal?: AbortSignal }): Promise<number>;
  /** Resolves when the container was killed by the OOM killer (best effort; never rejects). */
  oomKilled(containerId: string): Promise<boolean>;
  update(containerId: string, resources: OciResources): Promise<void>;
  usage(containerId: string): Promise<ContainerUsage>;
  removeContainer(containerId: string, timeoutSec: number): Promise<void>;
  /** A connection to `port` on the pod's loopback. */
  openPort(port: number): Promise<Duplex>;
  /** Stops everything of the pod and removes its host state. Idempotent. */
  stop(): Promise<void>;
}

export interface PodCreateRequest {
  readonly id: string;
  readonly config: PodConfig;
  readonly dns?: DnsConfig;
  /** The pod's resources and overhead, to size its VM. */
  readonly resources?: LinuxResources;
  readonly signal?: AbortSignal;
}

export interface SandboxController {
  readonly handler: string;
  create(request: PodCreateRequest): Promise<PodSandbox>;
  /**
   * Finds the pod `id` again after the daemon restarted: reconnects to what
   * still runs, or returns undefined when nothing does (its host state is
   * then cleaned).
   */
  recover(id: string, config: PodConfig): Promise<PodSandbox | undefined>;
}
