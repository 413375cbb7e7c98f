/**
 * One pod's VM and the containers in it: the engine under the CRI server.
 * Booting is a multi-step create with a rollback stack; stopping is
 * idempotent and removes every host resource the VM had (processes,
 * sockets, mounts, directories).
 */
import { mkdir, rm } from "node:fs/promises";
import { VmpodError, messageOf, wrap } from "../common/errors.js";
import { isSafeId } from "../common/ids.js";
import type { Logger } from "../common/log.js";
import { bindMount, makeSharedMountPoint, overlayMount, unmountTree } from "../common/mount.js";
import type { OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import { Rollback } from "../common/rollback.js";
import { sleep } from "../common/time.js";
import type { AgentClient } from "../agent/client.js";
import type { ContainerStats } from "../agent/translate.js";
import type { RootfsLayers } from "../image/types.js";
import type { Hypervisor, VmExit } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { readTail } from "../hypervisor/tail.js";
import { LayerDisks } from "./layer-disks.js";
import { containerGuestBlockRootfs, containerGuestRootfs, containerHostDir, containerHostRootfs, GUEST_SHARED_DIR, SHARED_FS_TAG, type SandboxPaths } from "./layout.js";
import { openProcessIo, type ProcessIo } from "./process-io.js";
import { restoreVm, type PodVmRestoreOptions } from "./template-restore.js";
import { connectToAgent, withConsole, type PodVmOptions } from "./vm-agent.js";
import { loadVmRecord, saveVmRecord } from "./vm-record.js";

/** What taking over a running pod VM needs (its spec and processes are read from the pod's directory). */
export interface ReattachOptions {
  readonly id: string;
  readonly paths: SandboxPaths;
  readonly hypervisor: Hypervisor;
  readonly agentDialTimeoutMs: number;
  readonly agentCallTimeoutMs: number;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
}

/**
 * Where a container's root filesystem comes from: a directory prepared on
 * the host, or an image's layers and the container's writable layer (from
 * the image service's `use`).
 */
export type ContainerRootfs = { readonly kind: "dir"; readonly path: string } | { readonly kind: "layers"; readonly layers: RootfsLayers };

/** Milliseconds spent in each phase of a boot. */
export interface BootTimings {
  prepareMs: number;
  vmStartMs: number;
  agentMs: number;
  sandboxMs: number;
}

const STOP_TIMEOUT_MS = 5_000;
const CONSOLE_TAIL_BYTES = 2_048;
/** How long a failed boot waits to see whether QEMU is exiting. */
const EXIT_GRACE_MS = 1_000;

export class PodVm {
  private stopping: Promise<void> | undefined;
  private readonly containers = new Set<string>();
  /** Image layers as disks, when the VM takes them. */
  private readonly layerDisks: LayerDisks | undefined;

  private constructor(
    readonly id: string,
    readonly paths: SandboxPaths,
    readonly timings: BootTimings,
    /** The pid of the VM's QEMU (taken over with the VM after a restart too). */
    readonly qemuPid: number,
    private readonly spec: VmSpec,
    private readonly hypervisor: Hypervisor,
    private readonly agent: AgentClient,
    /** Resolves when the VM process exits, whoever stopped it. */
    readonly exited: Promise<VmExit>,
    private readonly logger: Logger,
    /** True when the pod's shared directory reaches the guest (given at boot, or added after a restore). */
    private readonly shared: boolean,
    /** The key of the template the VM was restored from; undefined for a cold boot. */
    readonly template?: string,
  ) {
    this.layerDisks = spec.blockHotplug ? new LayerDisks(hypervisor, logger) : undefined;
  }

  /** The file the guest's serial console is written to (kernel, init and agent log). */
  get consoleLog(): string {
    return this.spec.consoleLog;
  }

  /** The VM's vCPUs and memory. */
  get size(): { vcpus: number; memoryMiB: number } {
    return { vcpus: this.spec.vcpus, memoryMiB: this.spec.memoryMiB };
  }

  /** True when containers' image layers go to the VM as disks; ask the image service for block images then. */
  get takesLayerDisks(): boolean {
    return this.layerDisks !== undefined;
  }

  static async boot(options: PodVmOptions): Promise<PodVm> {
    const { paths, hypervisor, logger } = options;
    if (!isSafeId(options.id)) throw new VmpodError("InvalidArgument", `pod id ${JSON.stringify(options.id)} is not a safe name`);
    const timings: BootTimings = { prepareMs: 0, vmStartMs: 0, agentMs: 0, sandboxMs: 0 };
    await using undo = new Rollback();
    let t = performance.now();
    const lap = () => {
      const now = performance.now();
      const ms = now - t;
      t = now;
      return ms;
    };
    let qemuPid: number;
    try {
      await mkdir(paths.root, { recursive: true, mode: 0o700 });
      undo.push("remove state dir", () => rm(paths.root, { recursive: true, force: true }));
      await mkdir(paths.sharedDir, { mode: 0o700 });
      await makeSharedMountPoint(paths.sharedDir);
      undo.push("unmount shared dir", () => unmountTree(paths.sharedDir));
      undo.push("clean up vm", () => hypervisor.cleanup());
      await hypervisor.prepare(options.spec, signalOpt(options.signal));
      timings.prepareMs = lap();
      await hypervisor.start(signalOpt(options.signal));
      // Before anything else: a vmpod that dies from here on leaves a VM the next one can take over.
      const handle = await hypervisor.handle();
      await saveVmRecord(paths, { spec: options.spec, handle });
      qemuPid = handle.qemu.pid;
      timings.vmStartMs = lap();
    } catch (err) {
      throw wrap("boot vm", err);
    }
    const exited = hypervisor.wait();
    let agent: AgentClient;
    try {
      agent = await connectToAgent(options.spec, exited, options);
      undo.push("close agent", () => agent.close());
      timings.agentMs = lap();
      if (options.network) {
        await agent.updateInterface(options.network.nic);
        if (options.network.routes.length > 0) await agent.updateRoutes(options.network.routes);
      }
      await agent.createSandbox({
        sandboxId: options.id,
        hostname: options.hostname,
        dns: options.dns ?? [],
        storages: options.spec.sharedFs ? [{ driver: "virtio-fs", source: SHARED_FS_TAG, fstype: "virtiofs", mountPoint: GUEST_SHARED_DIR }] : [],
      });
      timings.sandboxMs = lap();
    } catch (err) {
      // A dying VM shows first as a reset connection, then as QEMU's exit.
      const gone = await Promise.race([exited.then(() => true), sleep(EXIT_GRACE_MS).then(() => false)]);
      throw await withConsole(options.spec, gone ? new VmpodError("Unavailable", "the VM exited during boot", { cause: err }) : wrap("boot vm", err));
    }
    undo.commit();
    logger.debug("pod vm booted", { ...timings });
    return new PodVm(options.id, paths, timings, qemuPid, options.spec, hypervisor, agent, exited, logger, options.spec.sharedFs !== undefined);
  }

  /**
   * Starts the pod's VM from a template's saved state instead of booting it
   * (template-restore.ts has the steps); ends like `boot`.
   */
  static async restore(options: PodVmRestoreOptions): Promise<PodVm> {
    if (!isSafeId(options.id)) throw new VmpodError("InvalidArgument", `pod id ${JSON.stringify(options.id)} is not a safe name`);
    const vm = await restoreVm(options);
    options.logger.debug("pod vm restored from a template", { ...vm.timings });
    return new PodVm(options.id, options.paths, vm.timings, vm.qemuPid, options.spec, options.hypervisor, vm.agent, vm.exited, options.logger, true, options.template);
  }

  /**
   * Takes over the pod's VM after vmpod restarted: its QEMU and virtiofsd
   * found by the record written at boot, its agent connected again. The
   * guest's containers and their output waited for vmpod meanwhile. NotFound
   * when the VM no longer runs; on any failure nothing is stopped (the
   * caller cleans up what is left).
   */
  static async reattach(options: ReattachOptions): Promise<PodVm> {
    const { paths, hypervisor } = options;
    const { spec, handle, template } = await loadVmRecord(paths);
    if (spec.runDir !== paths.vmDir) throw new VmpodError("InvalidArgument", `vm record of pod ${options.id} names run dir ${spec.runDir}, not ${paths.vmDir}`);
    // Which disks the guest holds is not kept across restarts yet.
    if (spec.blockHotplug) throw new VmpodError("Unimplemented", `pod ${options.id} takes image layers as disks, which a restarted vmpod cannot take over`);
    const started = performance.now();
    await hypervisor.adopt(spec, handle, signalOpt(options.signal));
    const exited = hypervisor.wait();
    const agent = await connectToAgent(spec, exited, options);
    const timings: BootTimings = { prepareMs: 0, vmStartMs: 0, agentMs: performance.now() - started, sandboxMs: 0 };
    const shared = spec.sharedFs !== undefined || (handle.addedShares ?? []).some((share) => share.tag === SHARED_FS_TAG);
    return new PodVm(options.id, paths, timings, handle.qemu.pid, spec, hypervisor, agent, exited, options.logger, shared, template);
  }

  /** The agent, for calls this class does not wrap. */
  get agentClient(): AgentClient {
    return this.agent;
  }

  /**
   * Creates a container from its root filesystem: a directory on the host
   * bind-mounted into the pod's shared directory; or an image's layers with
   * the container's writable layer, overlaid on the host into the shared
   * directory, or, when the VM takes disks (block layers), given as erofs
   * disks that the guest overlays, with the container's writes in the guest.
   * `spec.root` is set here.
   */
  async createContainer(containerId: string, rootfs: ContainerRootfs, spec: OciSpec, options: { readonlyRootfs?: boolean } = {}): Promise<void> {
    this.checkContainerId(containerId);
    if (this.containers.has(containerId)) throw new VmpodError("AlreadyExists", `container ${containerId} already exists in pod ${this.id}`);
    const readonly = options.readonlyRootfs ?? false;
    await using undo = new Rollback();
    try {
      if (rootfs.kind === "layers" && this.layerDisks) {
        const guestRootfs = containerGuestBlockRootfs(containerId);
        const storages = await this.layerDisks.acquire(containerId, rootfs.layers, guestRootfs, { readonly });
        const disks = this.layerDisks;
        undo.push("release layer disks", () => disks.release(containerId));
        await this.agent.createContainer({ containerId, storages, spec: { ...spec, root: { path: guestRootfs, readonly } } });
      } else {
        await this.prepareSharedRootfs(containerId, rootfs, readonly, undo);
        await this.agent.createContainer({ containerId, spec: { ...spec, root: { path: containerGuestRootfs(containerId), readonly } } });
      }
    } catch (err) {
      throw wrap(`create container ${containerId}`, err);
    }
    undo.commit();
    this.containers.add(containerId);
  }

  /** Puts the container's root filesystem in the pod's shared directory. */
  private async prepareSharedRootfs(containerId: string, rootfs: ContainerRootfs, readonly: boolean, undo: Rollback): Promise<void> {
    if (!this.shared) throw new VmpodError("FailedPrecondition", `pod ${this.id} has no shared directory (shared_fs = "none") and takes no disks for image layers`);
    const target = containerHostRootfs(this.paths, containerId);
    await mkdir(target, { recursive: true, mode: 0o700 });
    undo.push("remove container dir", async () => {
      // Mounts shared for the container's volumes may already lie below it.
      await unmountTree(containerHostDir(this.paths, containerId));
      await rm(containerHostDir(this.paths, containerId), { recursive: true, force: true });
    });
    if (rootfs.kind === "dir") {
      await bindMount(rootfs.path, target, readonly ? { readonly: true } : {});
    } else {
      const { layers, upperDir, workDir } = rootfs.layers;
      await overlayMount(layers.map((l) => l.dir).reverse(), upperDir, workDir, target);
    }
    undo.push("unmount rootfs", () => unmountTree(target));
  }

  async startContainer(containerId: string): Promise<void> {
    await this.agent.startContainer(containerId).catch((err: unknown) => {
      throw wrap(`start container ${containerId}`, err);
    });
  }

  /** The standard streams of a container's first process (execId "") or of an exec'd one. */
  io(containerId: string, execId: string, options: { stdin?: boolean; terminal?: boolean } = {}): ProcessIo {
    return openProcessIo(this.agent, containerId, execId, options);
  }

  async exec(containerId: string, execId: string, process: OciProcess, options: { stdin?: boolean } = {}): Promise<ProcessIo> {
    this.checkContainerId(containerId);
    try {
      await this.agent.execProcess(containerId, execId, process);
    } catch (err) {
      throw wrap(`exec in container ${containerId}`, err);
    }
    return this.io(containerId, execId, { stdin: options.stdin ?? false, terminal: process.terminal ?? false });
  }

  async signal(containerId: string, execId: string, signal: number): Promise<void> {
    await this.agent.signalProcess(containerId, execId, signal).catch((err: unknown) => {
      throw wrap(`signal ${containerId}`, err);
    });
  }

  /** The exit status of a process: the code, or 128 + signal. */
  async wait(containerId: string, execId = "", options: { signal?: AbortSignal } = {}): Promise<number> {
    return this.agent.waitProcess(containerId, execId, options).catch((err: unknown) => {
      throw wrap(`wait for ${containerId}${execId ? `/${execId}` : ""}`, err);
    });
  }

  async update(containerId: string, resources: OciResources): Promise<void> {
    await this.agent.updateContainer(containerId, resources).catch((err: unknown) => {
      throw wrap(`update container ${containerId}`, err);
    });
  }

  async stats(containerId: string): Promise<ContainerStats> {
    return this.agent.statsContainer(containerId).catch((err: unknown) => {
      throw wrap(`stats of container ${containerId}`, err);
    });
  }

  /** Kills what is left of the container and removes it, in the guest and on the host. */
  async removeContainer(containerId: string, timeoutSec = 10): Promise<void> {
    this.checkContainerId(containerId);
    const failures: unknown[] = [];
    try {
      await this.agent.removeContainer(containerId, timeoutSec, { timeoutMs: (timeoutSec + 10) * 1000 });
    } catch (err) {
      if (!(err instanceof VmpodError && err.kind === "NotFound")) failures.push(err);
    }
    // A disk leaves the VM only once the guest has let go of it; if the agent
    // could not remove the container, its disks stay until the pod stops.
    if (this.layerDisks && failures.length === 0) await this.layerDisks.release(containerId).catch((err: unknown) => failures.push(err));
    // Everything mounted for the container: its rootfs, and whatever was shared beside it.
    await unmountTree(containerHostDir(this.paths, containerId)).catch((err: unknown) => failures.push(err));
    await rm(containerHostDir(this.paths, containerId), { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
    this.containers.delete(containerId);
    if (failures.length > 0) throw new VmpodError("Internal", `remove container ${containerId}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }

  /** Stops every container and the VM, and removes all host state. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const failures: unknown[] = [];
    if (!this.agent.isClosed) {
      await this.agent.destroySandbox({ timeoutMs: STOP_TIMEOUT_MS }).catch((err: unknown) => this.logger.debug("destroy sandbox", { err: messageOf(err) }));
    }
    this.agent.close();
    await this.hypervisor.stop({ timeoutMs: STOP_TIMEOUT_MS }).catch((err: unknown) => failures.push(err));
    await this.hypervisor.cleanup().catch((err: unknown) => failures.push(err));
    await unmountTree(this.paths.root).catch((err: unknown) => failures.push(err));
    await rm(this.paths.root, { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
    if (failures.length > 0) {
      throw new VmpodError("Internal", `stop pod vm ${this.id}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
    }
  }

  /** The last lines the guest wrote to its console. */
  consoleTail(): Promise<string> {
    return readTail(this.spec.consoleLog, CONSOLE_TAIL_BYTES);
  }

  private checkContainerId(id: string): void {
    if (!isSafeId(id)) throw new VmpodError("InvalidArgument", `container id ${JSON.stringify(id)} is not a safe name`);
  }
}

function signalOpt(signal: AbortSignal | undefined): { signal?: AbortSignal } {
  return signal ? { signal } : {};
}
