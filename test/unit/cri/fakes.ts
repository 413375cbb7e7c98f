/**
 * Fakes at the CRI server's interfaces: a Runtime keeping pods and
 * containers in memory, an image service with a fixed set of images, and
 * streaming URLs that record what they were asked. Each records its calls.
 */
import { Duplex } from "node:stream";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { ContainerConfigSchema, PodSandboxConfigSchema, type ContainerConfig as CriContainerConfig, type PodSandboxConfig } from "../../../src/gen/cri/api_pb.js";
import { VmpodError } from "../../../src/common/errors.js";
import type { Digest } from "../../../src/image/digest.js";
import type { FilesystemUsage, ImageDescription, ImageFilter, ImageRecord, PullOptions } from "../../../src/image/types.js";
import type { CriImages } from "../../../src/cri/deps.js";
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamingUrls } from "../../../src/cri/streaming/types.js";
import type {
  CallOptions,
  ContainerFilter,
  ContainerStatsSample,
  ExecSyncResult,
  PodFilter,
  PodStatsSample,
  Runtime,
  RuntimeCondition,
} from "../../../src/sandbox/runtime.js";
import type { ContainerConfig, ContainerEvent, ContainerStatus, LinuxResources, PodConfig, PodStatus } from "../../../src/sandbox/types.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

function matches(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>> | undefined): boolean {
  return Object.entries(selector ?? {}).every(([k, v]) => labels[k] === v);
}

export class FakeRuntime implements Runtime {
  readonly handlers = ["vmpod", "runc"];
  readonly calls: { method: string; args: unknown[] }[] = [];
  readonly pods = new Map<string, Mutable<PodStatus>>();
  readonly containers = new Map<string, Mutable<ContainerStatus>>();
  /** Set to make the next call of that method fail. */
  failNext: { method: string; error: unknown } | undefined;
  conditionList: RuntimeCondition[] = [
    { type: "RuntimeReady", status: true, reason: "", message: "" },
    { type: "NetworkReady", status: false, reason: "NetworkPluginNotReady", message: "no CNI configuration" },
  ];
  private nextId = 1;
  private readonly listeners = new Set<(e: ContainerEvent) => void>();
  private now = 1_700_000_000_000_000_000n;

  private record(method: string, ...args: unknown[]): void {
    this.calls.push({ method, args });
    if (this.failNext?.method === method) {
      const { error } = this.failNext;
      this.failNext = undefined;
      throw error;
    }
  }

  private tick(): bigint {
    this.now += 1_000_000n;
    return this.now;
  }

  emit(event: ContainerEvent): void {
    for (const l of this.listeners) l(event);
  }

  get listenerCount(): number {
    return this.listeners.size;
  }

  async runPod(config: PodConfig, handler: string, options?: CallOptions): Promise<string> {
    this.record("runPod", config, handler, options);
    const id = `pod${this.nextId++}`;
    // As the real runtime does: an empty name is its default handler.
    this.pods.set(id, { id, config, handler: handler || (this.handlers[0] ?? ""), state: "ready", createdAt: this.tick(), ip: "10.88.0.2", additionalIps: ["fd00::2"], info: { pid: 42, accel: "tcg" } });
    return id;
  }
  async stopPod(id: string): Promise<void> {
    this.record("stopPod", id);
    const pod = this.pods.get(id);
    if (pod) pod.state = "notready";
  }
  async removePod(id: string): Promise<void> {
    this.record("removePod", id);
    this.pods.delete(id);
  }
  podStatus(id: string): PodStatus {
    this.record("podStatus", id);
    const pod = this.pods.get(id);
    if (!pod) throw new VmpodError("NotFound", `pod ${id} not found`);
    return pod;
  }
  listPods(filter?: PodFilter): PodStatus[] {
    this.record("listPods", filter);
    return [...this.pods.values()].filter((p) => (filter?.id === undefined || p.id.startsWith(filter.id)) && (filter?.state === undefined || p.state === filter.state) && matches(p.config.labels, filter?.labels));
  }
  async createContainer(podId: string, config: ContainerConfig, options?: CallOptions): Promise<string> {
    this.record("createContainer", podId, config, options);
    const pod = this.podStatus(podId);
    const id = `ctr${this.nextId++}`;
    this.containers.set(id, {
      id,
      podId,
      config,
      imageId: "sha256:" + "c".repeat(64),
      imageRef: "docker.io/library/busybox@sha256:" + "d".repeat(64),
      state: "created",
      createdAt: this.tick(),
      startedAt: 0n,
      finishedAt: 0n,
      exitCode: 0,
      reason: "",
      message: "",
      logPath: config.logPath === "" ? "" : `${pod.config.logDirectory}/${config.logPath}`,
      info: { pid: 0 },
    });
    return id;
  }
  private container(id: string): Mutable<ContainerStatus> {
    const c = this.containers.get(id);
    if (!c) throw new VmpodError("NotFound", `container ${id} not found`);
    return c;
  }
  async startContainer(id: string): Promise<void> {
    this.record("startContainer", id);
    const c = this.container(id);
    c.state = "running";
    c.startedAt = this.tick();
  }
  async stopContainer(id: string, timeoutSec: number): Promise<void> {
    this.record("stopContainer", id, timeoutSec);
    const c = this.containers.get(id);
    if (c && c.state === "running") Object.assign(c, { state: "exited", finishedAt: this.tick(), exitCode: 137, reason: "Error", message: "killed" });
  }
  async removeContainer(id: string): Promise<void> {
    this.record("removeContainer", id);
    this.containers.delete(id);
  }
  containerStatus(id: string): ContainerStatus {
    this.record("containerStatus", id);
    return this.container(id);
  }
  listContainers(filter?: ContainerFilter): ContainerStatus[] {
    this.record("listContainers", filter);
    return [...this.containers.values()].filter(
      (c) =>
        (filter?.id === undefined || c.id.startsWith(filter.id)) &&
        (filter?.podId === undefined || c.podId === filter.podId) &&
        (filter?.state === undefined || c.state === filter.state) &&
        matches(c.config.labels, filter?.labels),
    );
  }
  async updateContainer(id: string, resources: LinuxResources): Promise<void> {
    this.record("updateContainer", id, resources);
    this.container(id);
  }
  async reopenContainerLog(id: string): Promise<void> {
    this.record("reopenContainerLog", id);
    this.container(id);
  }
  async execSync(id: string, command: readonly string[], timeoutSec: number): Promise<ExecSyncResult> {
    this.record("execSync", id, command, timeoutSec);
    this.container(id);
    return { stdout: Buffer.from(command.join(" ") + "\n"), stderr: Buffer.from("warn\n"), exitCode: 3 };
  }
  async exec(): Promise<number> {
    throw new VmpodError("Internal", "the CRI server never calls exec itself");
  }
  async attach(): Promise<void> {
    throw new VmpodError("Internal", "the CRI server never calls attach itself");
  }
  async portForward(): Promise<Duplex> {
    throw new VmpodError("Internal", "the CRI server never calls portForward itself");
  }
  cpuNs = 1_000_000_000n;
  sampleAt = 1_700_000_000_000_000_000n;
  private sample(c: ContainerStatus): ContainerStatsSample {
    return {
      containerId: c.id,
      podId: c.podId,
      timestamp: this.sampleAt,
      cpuUsageNs: this.cpuNs,
      memoryWorkingSetBytes: 10_000_000n,
      memoryUsageBytes: 12_000_000n,
      memoryRssBytes: 8_000_000n,
      memoryPageFaults: 100n,
      memoryMajorPageFaults: 1n,
      memoryLimitBytes: 64_000_000n,
      writableLayerBytes: 4096n,
      writableLayerInodes: 3n,
    };
  }
  async containerStats(id: string): Promise<ContainerStatsSample> {
    this.record("containerStats", id);
    return this.sample(this.container(id));
  }
  async listContainerStats(filter?: ContainerFilter): Promise<ContainerStatsSample[]> {
    this.record("listContainerStats", filter);
    return this.listContainers(filter).map((c) => this.sample(c));
  }
  async podStats(id: string): Promise<PodStatsSample> {
    this.record("podStats", id);
    const pod = this.podStatus(id);
    const containers = this.listContainers({ podId: pod.id }).map((c) => this.sample(c));
    return { podId: id, timestamp: this.sampleAt, cpuUsageNs: this.cpuNs * 2n, memoryWorkingSetBytes: 30_000_000n, memoryUsageBytes: 40_000_000n, processCount: 5n, containers };
  }
  async listPodStats(filter?: PodFilter): Promise<PodStatsSample[]> {
    this.record("listPodStats", filter);
    return Promise.all(this.listPods(filter).map((p) => this.podStats(p.id)));
  }
  events(options?: CallOptions): AsyncIterable<ContainerEvent> {
    this.record("events", options);
    const listeners = this.listeners;
    return {
      async *[Symbol.asyncIterator]() {
        const queue: ContainerEvent[] = [];
        let wake: (() => void) | undefined;
        const listener = (e: ContainerEvent) => {
          queue.push(e);
          wake?.();
        };
        const onAbort = () => wake?.();
        listeners.add(listener);
        options?.signal?.addEventListener("abort", onAbort);
        try {
          while (!options?.signal?.aborted) {
            const next = queue.shift();
            if (next) yield next;
            else await new Promise<void>((r) => (wake = r));
          }
        } finally {
          listeners.delete(listener);
          options?.signal?.removeEventListener("abort", onAbort);
        }
      },
    };
  }
  async conditions(): Promise<readonly RuntimeCondition[]> {
    this.record("conditions");
    return this.conditionList;
  }
  async updateRuntimeConfig(podCidr: string): Promise<void> {
    this.record("updateRuntimeConfig", podCidr);
  }
}

export const BUSYBOX_ID = ("sha256:" + "a".repeat(64)) as Digest;

export function busyboxRecord(overrides: Partial<ImageRecord> = {}): ImageRecord {
  return {
    id: BUSYBOX_ID,
    repoTags: ["docker.io/library/busybox:latest"],
    repoDigests: ["docker.io/library/busybox@sha256:" + "b".repeat(64)],
    manifestDigest: ("sha256:" + "b".repeat(64)) as Digest,
    layers: [("sha256:" + "e".repeat(64)) as Digest],
    size: 2_000_000,
    platform: { os: "linux", architecture: "amd64" },
    config: { user: "1000:1000", env: ["PATH=/bin"], entrypoint: [], cmd: ["sh"], exposedPorts: [], volumes: [], labels: {} },
    pinned: false,
    pulledAt: "2025-01-01T00:00:00Z",
    ...overrides,
  };
}

export class FakeImages implements CriImages {
  readonly calls: { method: string; args: unknown[] }[] = [];
  readonly records = new Map<string, ImageRecord>([[BUSYBOX_ID, busyboxRecord()]]);

  async pull(reference: string, options?: PullOptions): Promise<ImageRecord> {
    this.calls.push({ method: "pull", args: [reference, options] });
    if (reference.includes("missing")) throw new VmpodError("NotFound", `image ${reference} not found in its registry`);
    return this.find(reference) ?? busyboxRecord();
  }
  find(reference: string): ImageRecord | undefined {
    for (const r of this.records.values()) if (r.id === reference || r.repoTags.includes(reference) || r.repoDigests.includes(reference)) return r;
    return undefined;
  }
  list(filter?: ImageFilter): ImageRecord[] {
    this.calls.push({ method: "list", args: [filter] });
    if (filter?.image !== undefined) {
      const r = this.find(filter.image);
      return r ? [r] : [];
    }
    return [...this.records.values()];
  }
  async remove(reference: string): Promise<void> {
    this.calls.push({ method: "remove", args: [reference] });
    const r = this.find(reference);
    if (!r) throw new VmpodError("NotFound", `image ${reference} not found`);
    this.records.delete(r.id);
  }
  async describe(imageId: Digest): Promise<ImageDescription> {
    const record = this.records.get(imageId);
    if (!record) throw new VmpodError("NotFound", `image ${imageId} not found`);
    return { record, manifest: { schemaVersion: 2 }, config: { architecture: "amd64", config: { User: "1000:1000" } } };
  }
  async fsInfo(): Promise<{ readonly images: FilesystemUsage; readonly containers: FilesystemUsage }> {
    return {
      images: { mountpoint: "/var/lib/vmpod/images", usedBytes: 1000, inodesUsed: 10, timestamp: 1_700_000_000_000 },
      containers: { mountpoint: "/var/lib/vmpod/containers", usedBytes: 2000, inodesUsed: 20, timestamp: 1_700_000_000_000 },
    };
  }
}

export class FakeStreaming implements StreamingUrls {
  readonly asked: (ExecRequest | AttachRequest | PortForwardRequest)[] = [];
  execUrl(request: ExecRequest): string {
    this.asked.push(request);
    return "http://127.0.0.1:10010/exec/token1";
  }
  attachUrl(request: AttachRequest): string {
    this.asked.push(request);
    return "http://127.0.0.1:10010/attach/token2";
  }
  portForwardUrl(request: PortForwardRequest): string {
    this.asked.push(request);
    return "http://127.0.0.1:10010/portforward/token3";
  }
}

/** A pod config as kubelet sends it. */
export function podConfig(overrides: Exclude<MessageInitShape<typeof PodSandboxConfigSchema>, PodSandboxConfig> = {}): PodSandboxConfig {
  return create(PodSandboxConfigSchema, {
    metadata: { name: "web", uid: "uid-1", namespace: "default", attempt: 1 },
    hostname: "web",
    logDirectory: "/var/log/pods/default_web_uid-1",
    labels: { app: "web" },
    annotations: { "io.kubernetes.cri.untrusted-workload": "true" },
    ...overrides,
  });
}

export function containerConfig(overrides: Exclude<MessageInitShape<typeof ContainerConfigSchema>, CriContainerConfig> = {}): CriContainerConfig {
  return create(ContainerConfigSchema, {
    metadata: { name: "app", attempt: 0 },
    image: { image: "busybox" },
    command: ["sh"],
    args: ["-c", "sleep 100"],
    logPath: "app/0.log",
    labels: { tier: "front" },
    ...overrides,
  });
}
