/**
 * What the CRI server asks of the sandbox layer, in domain terms: the
 * RuntimeService's pod and container operations, streams for exec, attach
 * and port forwarding, stats and events. `src/cri/` translates CRI messages
 * to these calls and back; `PodManager` (pod-manager.ts) implements it.
 */
import type { Duplex, Readable, Writable } from "node:stream";
import type { ContainerConfig, ContainerEvent, ContainerStatus, LinuxResources, PodConfig, PodStatus } from "./types.js";

export interface CallOptions {
  readonly signal?: AbortSignal;
}

/** A terminal's size, as kubectl sends it on resize. */
export interface TerminalSize {
  readonly width: number;
  readonly height: number;
}

/**
 * The client's side of an exec or attach: what it sends (stdin, resizes)
 * and where what the process writes goes. With a terminal there is no
 * stderr: the terminal carries both.
 */
export interface ClientStreams {
  readonly stdin?: Readable;
  readonly stdout?: Writable;
  readonly stderr?: Writable;
  readonly resize?: AsyncIterable<TerminalSize>;
}

export interface ExecSyncResult {
  readonly stdout: Buffer;
  readonly stderr: Buffer;
  readonly exitCode: number;
}

export interface ContainerStatsSample {
  readonly containerId: string;
  readonly podId: string;
  /** Nanoseconds since the epoch. */
  readonly timestamp: bigint;
  readonly cpuUsageNs: bigint;
  readonly memoryWorkingSetBytes: bigint;
  readonly memoryUsageBytes: bigint;
  readonly memoryRssBytes: bigint;
  readonly memoryPageFaults: bigint;
  readonly memoryMajorPageFaults: bigint;
  readonly memoryLimitBytes: bigint;
  /** Bytes the container's writable layer uses, when known. */
  readonly writableLayerBytes?: bigint;
  readonly writableLayerInodes?: bigint;
}

export interface PodStatsSample {
  readonly podId: string;
  readonly timestamp: bigint;
  readonly cpuUsageNs: bigint;
  readonly memoryWorkingSetBytes: bigint;
  readonly memoryUsageBytes: bigint;
  readonly processCount: bigint;
  readonly containers: readonly ContainerStatsSample[];
}

export interface RuntimeCondition {
  readonly type: "RuntimeReady" | "NetworkReady";
  readonly status: boolean;
  readonly reason: string;
  readonly message: string;
}

export interface PodFilter {
  readonly id?: string;
  readonly state?: PodStatus["state"];
  readonly labels?: Readonly<Record<string, string>>;
}

export interface ContainerFilter {
  readonly id?: string;
  readonly podId?: string;
  readonly state?: ContainerStatus["state"];
  readonly labels?: Readonly<Record<string, string>>;
}

export interface Runtime {
  /** The runtime handler names configured, the default first. */
  readonly handlers: readonly string[];

  runPod(config: PodConfig, handler: string, options?: CallOptions): Promise<string>;
  /** Idempotent; an unknown id succeeds. */
  stopPod(id: string): Promise<void>;
  /** Idempotent; an unknown id succeeds. */
  removePod(id: string): Promise<void>;
  /** NotFound for an unknown id. */
  podStatus(id: string): PodStatus;
  listPods(filter?: PodFilter): PodStatus[];

  createContainer(podId: string, config: ContainerConfig, options?: CallOptions): Promise<string>;
  startContainer(id: string): Promise<void>;
  /** The stop signal, then SIGKILL after `timeoutSec`. Idempotent. */
  stopContainer(id: string, timeoutSec: number): Promise<void>;
  /** Idempotent; an unknown id succeeds. */
  removeContainer(id: string): Promise<void>;
  containerStatus(id: string): ContainerStatus;
  listContainers(filter?: ContainerFilter): ContainerStatus[];
  updateContainer(id: string, resources: LinuxResources): Promise<void>;
  reopenContainerLog(id: string): Promise<void>;

  execSync(id: string, command: readonly string[], timeoutSec: number): Promise<ExecSyncResult>;
  /** Runs `command` in the container wired to the client's streams; resolves with its exit code. */
  exec(id: string, command: readonly string[], options: { readonly tty: boolean }, streams: ClientStreams): Promise<number>;
  /** Wires the client to the container's first process until either side ends. */
  attach(id: string, options: { readonly tty: boolean }, streams: ClientStreams): Promise<void>;
  /** A connection to `port` on the pod's loopback (inside the VM for VM pods). */
  portForward(podId: string, port: number): Promise<Duplex>;

  containerStats(id: string): Promise<ContainerStatsSample>;
  listContainerStats(filter?: ContainerFilter): Promise<ContainerStatsSample[]>;
  podStats(id: string): Promise<PodStatsSample>;
  listPodStats(filter?: PodFilter): Promise<PodStatsSample[]>;

  /** Container lifecycle events from now on, until the signal aborts. */
  events(options?: CallOptions): AsyncIterable<ContainerEvent>;
  /** RuntimeReady and NetworkReady, with a reason when false. */
  conditions(): Promise<readonly RuntimeCondition[]>;
  updateRuntimeConfig(podCidr: string): Promise<void>;
}
