/**
 * The Runtime the CRI server calls: pods and their containers across the
 * runtime handlers, with their records on disk, their logs, their events.
 * Calls on one pod are serialized; different pods run in parallel. A pod
 * whose boot outlasts kubelet's deadline keeps booting and is handed to the
 * retry of the same pod.
 */
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { VmpodError, messageOf, wrap } from "../common/errors.js";
import { newId } from "../common/ids.js";
import type { Logger } from "../common/log.js";
import type { OciProcess } from "../common/oci-spec.js";
import type { ImageRecord, ImageService } from "../image/types.js";
import type { PodSandbox, SandboxController } from "./controller.js";
import { OutputPump, type LogSink } from "./container-io.js";
import { attachClient, execProcess, execSync, execWithClient } from "./container-exec.js";
import { EventBus } from "./events.js";
import { KeyedLock } from "./keyed-lock.js";
import { nowNs, RecordStore, type ContainerRecord, type PodRecord } from "./records.js";
import { recoverRecords } from "./recovery.js";
import type { ClientStreams, ContainerFilter, ContainerStatsSample, ExecSyncResult, PodFilter, PodStatsSample, Runtime, RuntimeCondition } from "./runtime.js";
import { signalNumber, toOciResources } from "./signals.js";
import { abortable, containerSample, containerStatusOf, labelsMatch, podKey, podSample, podStatusOf, settlesWithin, sumResources } from "./pod-views.js";
import type { ContainerConfig, ContainerEvent, ContainerStatus, LinuxResources, PodConfig, PodStatus } from "./types.js";
import type { ContainerSpecBuilder } from "./spec-builder.js";

export const UNTRUSTED_ANNOTATION = "io.kubernetes.cri.untrusted-workload";
const STOP_WAIT_AFTER_KILL_MS = 10_000;
const OUTPUT_DRAIN_MS = 2_000;
const SIGKILL = 9;

export interface PodManagerOptions {
  readonly stateRoot: string;
  /** By handler name; `defaultHandler` serves requests that name none. */
  readonly controllers: ReadonlyMap<string, SandboxController>;
  readonly defaultHandler: string;
  /** The handler untrusted pods always get (a VM handler). */
  readonly vmHandler: string;
  readonly images: ImageService;
  readonly buildSpec: ContainerSpecBuilder;
  readonly openLog: (path: string) => Promise<LogSink>;
  /** Whether pods can get a network (CNI configured); absent, they cannot. */
  readonly networkStatus?: () => Promise<{ readonly ready: boolean; readonly reason?: string; readonly message?: string }>;
  readonly logger: Logger;
}

interface PodEntry {
  record: PodRecord;
  sandbox?: PodSandbox;
  booting?: Promise<void>;
}

interface ContainerEntry {
  record: ContainerRecord;
  process?: OciProcess;
  log?: LogSink;
  pump?: OutputPump;
  exited?: Promise<void>;
}

export class PodManager implements Runtime {
  readonly handlers: readonly string[];
  private readonly pods = new Map<string, PodEntry>();
  private readonly containers = new Map<string, ContainerEntry>();
  private readonly lock = new KeyedLock();
  private readonly bus = new EventBus();
  private readonly records: RecordStore;
  private podCidr = "";

  private constructor(private readonly options: PodManagerOptions) {
    this.handlers = [options.defaultHandler, ...[...options.controllers.keys()].filter((h) => h !== options.defaultHandler)];
    this.records = new RecordStore(options.stateRoot, options.logger);
  }

  /** Opens the manager: reads the records and finds again what still runs. */
  static async open(options: PodManagerOptions): Promise<PodManager> {
    const manager = new PodManager(options);
    await manager.recover();
    return manager;
  }

  // ---- pods ----

  async runPod(config: PodConfig, handler: string, options: { signal?: AbortSignal } = {}): Promise<string> {
    const controller = this.controllerFor(config, handler);
    const key = podKey(config);
    const { id, booting } = await this.lock.run(`name:${key}`, async (): Promise<{ id: string; booting?: Promise<void> }> => {
      for (const entry of this.pods.values()) {
        const m = entry.record.config.metadata;
        if (podKey(entry.record.config) === key) {
          if (entry.record.state === "notready") throw new VmpodError("FailedPrecondition", `pod name ${key} is reserved by pod ${entry.record.id}, which is not ready: remove it first`);
          // kubelet's retry of a pod that is up or still booting
          return entry.booting ? { id: entry.record.id, booting: entry.booting } : { id: entry.record.id };
        }
        if (entry.record.state !== "notready" && m.name === config.metadata.name && m.namespace === config.metadata.namespace) {
          throw new VmpodError("FailedPrecondition", `pod ${m.namespace}/${m.name} is held by pod ${entry.record.id} (uid ${m.uid}, attempt ${m.attempt}); stop it first`);
        }
      }
      const record: PodRecord = { id: newId(), config, handler: controller.handler, createdAt: nowNs().toString(), state: "creating" };
      await this.records.savePod(record);
      const entry: PodEntry = { record };
      this.pods.set(record.id, entry);
      // Not tied to the request: a boot that outlasts kubelet's deadline goes on.
      entry.booting = this.boot(entry, controller);
      entry.booting.catch(() => undefined);
      return { id: record.id, booting: entry.booting };
    });
    if (booting) await abortable(booting, options.signal);
    return id;
  }

  private async boot(entry: PodEntry, controller: SandboxController): Promise<void> {
    const { id, config } = entry.record;
    try {
      const sandbox = await controller.create({
        id,
        config,
        ...(config.dns ? { dns: config.dns } : {}),
        ...(config.resources || config.overhead ? { resources: sumResources(config.resources, config.overhead) } : {}),
      });
      entry.sandbox = sandbox;
      entry.record = { ...entry.record, state: "ready" };
      await this.records.savePod(entry.record);
      void sandbox.gone.then(() => this.podGone(id));
    } catch (err) {
      this.pods.delete(id);
      await this.records.deletePod(id).catch(() => undefined);
      throw wrap(`run pod ${config.metadata.namespace}/${config.metadata.name}`, err);
    } finally {
      delete entry.booting;
    }
  }

  async stopPod(id: string): Promise<void> {
    const entry = this.pods.get(id);
    if (!entry) return;
    await entry.booting?.catch(() => undefined);
    await this.lock.run(id, async () => {
      for (const c of this.containersOf(id)) if (c.record.state === "running") await this.stopRunning(c, 0);
      await entry.sandbox?.stop();
      for (const c of this.containersOf(id)) if (c.record.state === "created") await this.setContainer(c, { state: "exited", exitCode: 255, reason: "Error", message: "the pod was stopped before the container started", finishedAt: nowNs().toString() });
      entry.record = { ...entry.record, state: "notready" };
      await this.records.savePod(entry.record);
    });
  }

  async removePod(id: string): Promise<void> {
    if (!this.pods.has(id)) return;
    await this.stopPod(id);
    await this.lock.run(id, async () => {
      for (const c of this.containersOf(id)) await this.forgetContainer(c);
      this.pods.delete(id);
      await this.records.deletePod(id);
    });
  }

  podStatus(id: string): PodStatus {
    return this.podView(this.pod(id));
  }

  listPods(filter: PodFilter = {}): PodStatus[] {
    return [...this.pods.values()]
      .filter((e) => e.record.state !== "creating" || e.booting !== undefined)
      .map((e) => this.podView(e))
      .filter((p) => (filter.id === undefined || p.id.startsWith(filter.id)) && (filter.state === undefined || p.state === filter.state) && labelsMatch(p.config.labels, filter.labels));
  }

  // ---- containers ----

  async createContainer(podId: string, config: ContainerConfig, _options: { signal?: AbortSignal } = {}): Promise<string> {
    const pod = this.pod(podId);
    return this.lock.run(podId, async () => {
      const sandbox = this.readySandbox(pod);
      for (const c of this.containersOf(podId)) {
        if (c.record.config.metadata.name === config.metadata.name && c.record.config.metadata.attempt === config.metadata.attempt) {
          throw new VmpodError("AlreadyExists", `container ${config.metadata.name} (attempt ${config.metadata.attempt}) already exists in pod ${podId} as ${c.record.id}`);
        }
      }
      const image = this.options.images.find(config.image);
      if (!image) throw new VmpodError("NotFound", `image ${JSON.stringify(config.image)} is not pulled`);
      const id = newId();
      const record: ContainerRecord = {
        id,
        podId,
        config,
        imageId: image.id,
        imageRef: image.repoDigests[0] ?? image.id,
        state: "created",
        createdAt: nowNs().toString(),
        startedAt: "0",
        finishedAt: "0",
        exitCode: 0,
        reason: "",
        message: "",
        logPath: config.logPath ? join(pod.record.config.logDirectory, config.logPath) : "",
      };
      await this.records.saveContainer(record);
      try {
        const rootfs = await this.options.images.use(image.id, id, { blockImages: sandbox.wantsBlockImages });
        const mounts = [];
        for (const [i, m] of config.mounts.entries()) {
          mounts.push({ containerPath: m.containerPath, source: await sandbox.shareMount(id, i, { hostPath: m.hostPath, readonly: m.readonly }), readonly: m.readonly, propagation: m.propagation });
        }
        const spec = await this.options.buildSpec({
          podId,
          pod: pod.record.config,
          containerId: id,
          container: config,
          image,
          handler: pod.record.handler,
          mounts,
          layerDirs: rootfs.layers.map((l) => l.dir),
          ...(sandbox.namespacePaths ? { podNamespaces: sandbox.namespacePaths } : {}),
          ...(sandbox.podFiles ? { podFiles: sandbox.podFiles } : {}),
        });
        await sandbox.createContainer(id, rootfs, spec, { readonlyRootfs: config.security.readonlyRootfs });
        const saved: ContainerRecord = spec.process ? { ...record, process: spec.process } : record;
        await this.records.saveContainer(saved);
        const entry: ContainerEntry = { record: saved, ...(spec.process ? { process: spec.process } : {}) };
        this.containers.set(id, entry);
        this.publish("created", record);
        return id;
      } catch (err) {
        await sandbox.removeContainer(id, 0).catch(() => undefined);
        await this.options.images.release(id).catch(() => undefined);
        await this.records.deleteContainer(id).catch(() => undefined);
        throw wrap(`create container ${config.metadata.name} in pod ${podId}`, err);
      }
    });
  }

  async startContainer(id: string): Promise<void> {
    const entry = this.container(id);
    await this.lock.run(entry.record.podId, async () => {
      if (entry.record.state !== "created") throw new VmpodError("FailedPrecondition", `container ${id} is ${entry.record.state}, not created`);
      const sandbox = this.readySandbox(this.pod(entry.record.podId));
      const log = entry.record.logPath ? await this.options.openLog(entry.record.logPath) : undefined;
      if (log) entry.log = log;
      const io = sandbox.io(id, "", { stdin: entry.record.config.stdin, terminal: entry.record.config.tty });
      try {
        await sandbox.startContainer(id);
      } catch (err) {
        io.stdout.destroy();
        io.stderr?.destroy();
        await log?.close();
        throw wrap(`start container ${id}`, err);
      }
      entry.pump = new OutputPump(io, log, this.options.logger.child({ pod: entry.record.podId, container: id }));
      await this.setContainer(entry, { state: "running", startedAt: nowNs().toString() });
      this.publish("started", entry.record);
      entry.exited = this.watchExit(entry, sandbox);
    });
  }

  private async watchExit(entry: ContainerEntry, sandbox: PodSandbox): Promise<void> {
    const id = entry.record.id;
    let code: number;
    try {
      code = await sandbox.wait(id, "");
    } catch (err) {
      if (entry.record.state !== "running") return;
      await this.setContainer(entry, { state: "exited", exitCode: 255, reason: "Error", message: `lost the container: ${messageOf(err)}`, finishedAt: nowNs().toString() });
      this.publish("stopped", entry.record);
      return;
    }
    const finishedAt = nowNs().toString();
    // The OOM killer's victims die of SIGKILL; only those are worth asking about
    // (the VM handler waits a moment for a late OOM event).
    const oom = code === 128 + SIGKILL && (await sandbox.oomKilled(id));
    // The last output is written to the log before the exit is reported, as far as it comes soon.
    await settlesWithin(entry.pump?.done, OUTPUT_DRAIN_MS);
    await this.setContainer(entry, { state: "exited", exitCode: code, reason: oom ? "OOMKilled" : code === 0 ? "Completed" : "Error", message: "", finishedAt });
    this.publish("stopped", entry.record);
  }

  async stopContainer(id: string, timeoutSec: number): Promise<void> {
    const entry = this.containers.get(id);
    if (!entry) return;
    await this.lock.run(entry.record.podId, () => this.stopRunning(entry, timeoutSec));
  }

  private async stopRunning(entry: ContainerEntry, timeoutSec: number): Promise<void> {
    if (entry.record.state !== "running") return;
    const sandbox = this.pods.get(entry.record.podId)?.sandbox;
    if (!sandbox) return;
    const id = entry.record.id;
    const stopSignal = signalNumber(entry.record.config.stopSignal || this.imageOf(entry)?.config.stopSignal || "SIGTERM");
    if (timeoutSec > 0) {
      await sandbox.signal(id, "", stopSignal).catch((err: unknown) => this.options.logger.debug("stop signal", { container: id, err: messageOf(err) }));
      if (await settlesWithin(entry.exited, timeoutSec * 1000)) return;
    }
    await sandbox.signal(id, "", SIGKILL).catch((err: unknown) => this.options.logger.debug("kill", { container: id, err: messageOf(err) }));
    if (!(await settlesWithin(entry.exited, STOP_WAIT_AFTER_KILL_MS))) throw new VmpodError("DeadlineExceeded", `container ${id} did not exit after SIGKILL`);
  }

  async removeContainer(id: string): Promise<void> {
    const entry = this.containers.get(id);
    if (!entry) return;
    await this.lock.run(entry.record.podId, async () => {
      await this.stopRunning(entry, 0);
      await this.forgetContainer(entry);
    });
  }

  private async forgetContainer(entry: ContainerEntry): Promise<void> {
    const id = entry.record.id;
    const sandbox = this.pods.get(entry.record.podId)?.sandbox;
    const pod = this.pods.get(entry.record.podId);
    if (sandbox && pod?.record.state === "ready") await sandbox.removeContainer(id, 0);
    await entry.log?.close().catch(() => undefined);
    await this.options.images.release(id);
    this.containers.delete(id);
    await this.records.deleteContainer(id);
    this.publish("deleted", entry.record);
  }

  containerStatus(id: string): ContainerStatus {
    return this.containerView(this.container(id));
  }

  listContainers(filter: ContainerFilter = {}): ContainerStatus[] {
    return [...this.containers.values()]
      .map((e) => this.containerView(e))
      .filter(
        (c) =>
          (filter.id === undefined || c.id.startsWith(filter.id)) &&
          (filter.podId === undefined || c.podId.startsWith(filter.podId)) &&
          (filter.state === undefined || c.state === filter.state) &&
          labelsMatch(c.config.labels, filter.labels),
      );
  }

  async updateContainer(id: string, resources: LinuxResources): Promise<void> {
    const entry = this.container(id);
    const sandbox = this.readySandbox(this.pod(entry.record.podId));
    await sandbox.update(id, toOciResources(resources));
  }

  async reopenContainerLog(id: string): Promise<void> {
    const entry = this.container(id);
    if (entry.record.state !== "running") throw new VmpodError("FailedPrecondition", `container ${id} is not running`);
    await entry.log?.reopen();
  }

  // ---- streams ----

  async execSync(id: string, command: readonly string[], timeoutSec: number): Promise<ExecSyncResult> {
    const { entry, sandbox } = this.running(id);
    return execSync(sandbox, id, execProcess(entry.process, command, false), timeoutSec);
  }

  async exec(id: string, command: readonly string[], options: { readonly tty: boolean }, streams: ClientStreams): Promise<number> {
    const { entry, sandbox } = this.running(id);
    return execWithClient(sandbox, id, execProcess(entry.process, command, options.tty), streams, this.options.logger.child({ pod: entry.record.podId, container: id }));
  }

  async attach(id: string, options: { readonly tty: boolean }, streams: ClientStreams): Promise<void> {
    const { entry, sandbox } = this.running(id);
    if (!entry.pump) throw new VmpodError("FailedPrecondition", `container ${id} has no output to attach to`);
    const c = entry.record.config;
    if (options.tty !== c.tty) throw new VmpodError("InvalidArgument", `attach with tty=${options.tty} to container ${id}, created with tty=${c.tty}`);
    await attachClient(sandbox, id, entry.pump, { stdin: c.stdin, stdinOnce: c.stdinOnce, tty: c.tty }, streams, entry.exited ?? Promise.resolve());
  }

  async portForward(podId: string, port: number): Promise<Duplex> {
    return this.readySandbox(this.pod(podId)).openPort(port);
  }

  // ---- stats, events, status ----

  async containerStats(id: string): Promise<ContainerStatsSample> {
    const { sandbox } = this.running(id);
    const entry = this.container(id);
    const [usage, layer] = await Promise.all([sandbox.usage(id), this.options.images.writableLayerUsage(id).catch(() => undefined)]);
    return containerSample(id, entry.record.podId, usage, layer);
  }

  async listContainerStats(filter: ContainerFilter = {}): Promise<ContainerStatsSample[]> {
    // Each sample is a call to the container's runtime (its pod's agent): asked all at once.
    const samples = await Promise.all(this.listContainers({ ...filter, state: "running" }).map((c) => this.containerStats(c.id).catch(() => undefined)));
    return samples.filter((sample): sample is ContainerStatsSample => sample !== undefined);
  }

  async podStats(id: string): Promise<PodStatsSample> {
    this.pod(id);
    return podSample(id, await this.listContainerStats({ podId: id }));
  }

  async listPodStats(filter: PodFilter = {}): Promise<PodStatsSample[]> {
    return Promise.all(this.listPods({ ...filter, state: "ready" }).map((p) => this.podStats(p.id)));
  }

  events(options: { signal?: AbortSignal } = {}): AsyncIterable<ContainerEvent> {
    return this.bus.subscribe(options.signal);
  }

  async conditions(): Promise<readonly RuntimeCondition[]> {
    const net = this.options.networkStatus
      ? await this.options.networkStatus().catch((err: unknown) => ({ ready: false, reason: "NetworkPluginNotReady", message: messageOf(err) }))
      : { ready: false, reason: "NoNetworkPlugin", message: "pod networking (CNI) is not configured: pods run without a network" };
    return [
      { type: "RuntimeReady", status: true, reason: "", message: "" },
      { type: "NetworkReady", status: net.ready, reason: net.ready ? "" : (net.reason ?? "NetworkPluginNotReady"), message: net.ready ? "" : (net.message ?? "") },
    ];
  }

  async updateRuntimeConfig(podCidr: string): Promise<void> {
    if (podCidr !== this.podCidr) this.options.logger.info("pod CIDR set", { podCidr });
    this.podCidr = podCidr;
  }

  // ---- helpers ----

  private controllerFor(config: PodConfig, handler: string): SandboxController {
    const untrusted = config.annotations[UNTRUSTED_ANNOTATION] === "true";
    const name = handler === "" ? (untrusted ? this.options.vmHandler : this.options.defaultHandler) : handler;
    const controller = this.options.controllers.get(name);
    if (!controller) throw new VmpodError("InvalidArgument", `unknown runtime handler ${JSON.stringify(handler)} (configured: ${this.handlers.join(", ")})`);
    if (untrusted && name !== this.options.vmHandler) {
      throw new VmpodError("InvalidArgument", `pod ${config.metadata.namespace}/${config.metadata.name} is marked ${UNTRUSTED_ANNOTATION}=true but asks for runtime handler ${JSON.stringify(name)}, which does not run pods in VMs`);
    }
    return controller;
  }

  private pod(id: string): PodEntry {
    const entry = this.pods.get(id);
    if (!entry) throw new VmpodError("NotFound", `pod ${id} not found`);
    return entry;
  }

  private container(id: string): ContainerEntry {
    const entry = this.containers.get(id);
    if (!entry) throw new VmpodError("NotFound", `container ${id} not found`);
    return entry;
  }

  private readySandbox(pod: PodEntry): PodSandbox {
    if (pod.record.state !== "ready" || !pod.sandbox) throw new VmpodError("FailedPrecondition", `pod ${pod.record.id} is not ready`);
    return pod.sandbox;
  }

  private running(id: string): { entry: ContainerEntry; sandbox: PodSandbox } {
    const entry = this.container(id);
    if (entry.record.state !== "running") throw new VmpodError("FailedPrecondition", `container ${id} is not running`);
    return { entry, sandbox: this.readySandbox(this.pod(entry.record.podId)) };
  }

  private containersOf(podId: string): ContainerEntry[] {
    return [...this.containers.values()].filter((c) => c.record.podId === podId);
  }

  private imageOf(entry: ContainerEntry): ImageRecord | undefined {
    return this.options.images.find(entry.record.imageId);
  }

  private async setContainer(entry: ContainerEntry, change: Partial<ContainerRecord>): Promise<void> {
    entry.record = { ...entry.record, ...change };
    await this.records.saveContainer(entry.record);
  }

  private publish(type: ContainerEvent["type"], record: ContainerRecord): void {
    this.bus.publish({ type, containerId: record.id, podId: record.podId, at: nowNs() });
  }

  private async podGone(id: string): Promise<void> {
    const entry = this.pods.get(id);
    if (!entry || entry.record.state !== "ready") return;
    this.options.logger.warn("pod vm is gone", { pod: id });
    await this.lock.run(id, async () => {
      if (entry.record.state !== "ready") return;
      entry.record = { ...entry.record, state: "notready" };
      await this.records.savePod(entry.record);
    });
  }

  private podView(entry: PodEntry): PodStatus {
    return podStatusOf(entry.record, entry.sandbox, entry.booting !== undefined);
  }

  private containerView(entry: ContainerEntry): ContainerStatus {
    return containerStatusOf(entry.record);
  }

  private async recover(): Promise<void> {
    const found = await recoverRecords(this.records, this.options.controllers, this.options.images, this.options.logger);
    for (const { record, sandbox } of found.pods) {
      this.pods.set(record.id, { record, ...(sandbox ? { sandbox } : {}) });
      if (sandbox) void sandbox.gone.then(() => this.podGone(record.id));
    }
    for (const record of found.containers) {
      const entry: ContainerEntry = { record, ...(record.process ? { process: record.process } : {}) };
      this.containers.set(record.id, entry);
      const sandbox = this.pods.get(record.podId)?.sandbox;
      if (sandbox && record.state === "running") await this.reattach(entry, sandbox);
    }
  }

  /** Follows a container that kept running while the daemon was down: its output again, its exit. */
  private async reattach(entry: ContainerEntry, sandbox: PodSandbox): Promise<void> {
    const r = entry.record;
    try {
      const log = r.logPath ? await this.options.openLog(r.logPath) : undefined;
      if (log) entry.log = log;
      entry.pump = new OutputPump(sandbox.io(r.id, "", { stdin: r.config.stdin, terminal: r.config.tty }), log, this.options.logger.child({ pod: r.podId, container: r.id }));
      entry.exited = this.watchExit(entry, sandbox);
    } catch (err) {
      this.options.logger.warn("could not follow a container again after the restart", { container: r.id, err: messageOf(err) });
    }
  }

}

