/**
 * One runc pod: namespaces on the host kept by bind mounts, and containers
 * run by an OCI runtime binary under per-container supervisors (see
 * supervisor.ts). Nearly everything is read from the pod's state directory
 * rather than kept in memory, so a pod recovered after a daemon restart
 * behaves as the one created: a container is "created" (its bundle), has
 * been started (supervisor.pid), or has exited (its exit file).
 */
import { openSync, constants as fsConstants } from "node:fs";
import { mkdir, open, readFile, readdir, rm } from "node:fs/promises";
import { Socket } from "node:net";
import type { Duplex, Readable, Writable } from "node:stream";
import { VmpodError, messageOf, wrap } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { exists, writeFileAtomic } from "../../common/fs.js";
import { isSafeId } from "../../common/ids.js";
import type { Logger } from "../../common/log.js";
import { overlayMount, unmountTree } from "../../common/mount.js";
import type { OciProcess, OciResources, OciSpec } from "../../common/oci-spec.js";
import { Rollback } from "../../common/rollback.js";
import { sleep } from "../../common/time.js";
import type { RootfsLayers } from "../../image/types.js";
import type { ContainerUsage, PodSandbox, SharedMount } from "../controller.js";
import type { ProcessIo } from "../process-io.js";
import { bundleSpec } from "./bundle-spec.js";
import type { Cgroups } from "./cgroups.js";
import { startExec, type ExecProcess } from "./exec-process.js";
import { resizeFirstTerminal } from "./first-terminal.js";
import { containerPaths, type ContainerPaths, type PodPaths } from "./layout.js";
import { removePodNamespaces } from "./namespaces.js";
import { OutputTail } from "./output-tail.js";
import { openPodPort } from "./port.js";
import type { RuntimeCli } from "./runtime-cli.js";
import { liveSupervisor, readExit, startSupervisor, waitForExit, waitForStart } from "./supervisor.js";

export interface RuncTools {
  readonly busybox: string;
  /** util-linux script(1), for containers with a terminal. */
  readonly script: string;
  readonly nsenter: string;
}

export interface RuncPodOptions {
  readonly id: string;
  readonly handler: string;
  readonly paths: PodPaths;
  readonly runtime: RuntimeCli;
  readonly cgroups: Cgroups;
  readonly tools: RuncTools;
  readonly logger: Logger;
  /** The pod's IP addresses (its CNI network), the primary first. */
  readonly ips?: readonly string[];
  /** Runs after the pod's containers and namespaces are gone (the CNI network's tear-down). */
  readonly afterStop?: () => Promise<void>;
}

const START_TIMEOUT_MS = 30_000;
/** How long an exited exec's status stays for a late wait(). */
const EXEC_KEEP_MS = 60_000;
/** How long removal waits for a killed container's supervisor to record its exit. */
const SUPERVISOR_EXIT_MS = 10_000;

export class RuncPod implements PodSandbox {
  readonly wantsBlockImages = false;
  readonly gone: Promise<void>;
  private markGone!: () => void;
  private stopping: Promise<void> | undefined;
  private readonly execs = new Map<string, ExecProcess>();
  private readonly tails = new Map<string, Set<Readable>>();
  private readonly stdinWriters = new Map<string, Writable>();
  /** Containers whose first process takes input (io() asked for stdin before the start). */
  private readonly wantsStdin = new Set<string>();

  constructor(private readonly o: RuncPodOptions) {
    this.gone = new Promise<void>((resolve) => (this.markGone = resolve));
  }

  get id(): string {
    return this.o.id;
  }

  get handler(): string {
    return this.o.handler;
  }

  get ips(): readonly string[] {
    return this.o.ips ?? [];
  }

  /** The pod's namespaces, for the spec builder (PodNamespacePaths) and CNI. */
  get namespacePaths(): { readonly network: string; readonly ipc: string; readonly uts: string } {
    return { network: this.o.paths.net, ipc: this.o.paths.ipc, uts: this.o.paths.uts };
  }

  info(): Readonly<Record<string, unknown>> {
    return { runtime: this.o.runtime.path, stateDir: this.o.paths.root, netns: this.o.paths.net, ipcns: this.o.paths.ipc, utsns: this.o.paths.uts };
  }

  /** Host containers bind-mount host paths directly. */
  async shareMount(_containerId: string, _index: number, mount: SharedMount): Promise<string> {
    if (!(await exists(mount.hostPath))) throw new VmpodError("InvalidArgument", `mount source ${mount.hostPath} does not exist`);
    return mount.hostPath;
  }

  private paths(containerId: string): ContainerPaths {
    if (!isSafeId(containerId)) throw new VmpodError("InvalidArgument", `container id ${JSON.stringify(containerId)} is not a safe name`);
    return containerPaths(this.o.paths, containerId);
  }

  private async known(containerId: string): Promise<ContainerPaths> {
    const p = this.paths(containerId);
    if (!(await exists(p.config))) throw new VmpodError("NotFound", `container ${containerId} not found in pod ${this.id}`);
    return p;
  }

  async createContainer(containerId: string, rootfs: RootfsLayers, spec: OciSpec, options: { readonly readonlyRootfs: boolean }): Promise<void> {
    const p = this.paths(containerId);
    if (await exists(p.dir)) throw new VmpodError("AlreadyExists", `container ${containerId} already exists in pod ${this.id}`);
    await using undo = new Rollback();
    try {
      await mkdir(p.rootfs, { recursive: true, mode: 0o700 });
      undo.push("remove container dir", () => rm(p.dir, { recursive: true, force: true }));
      await overlayMount(rootfs.layers.map((l) => l.dir).reverse(), rootfs.upperDir, rootfs.workDir, p.rootfs);
      undo.push("unmount rootfs", () => unmountTree(p.rootfs));
      const config = bundleSpec(spec, { podId: this.id, containerId, rootfs: p.rootfs, readonlyRootfs: options.readonlyRootfs, namespaces: this.namespacePaths });
      for (const f of [p.stdout, p.stderr]) await (await open(f, "a", 0o600)).close();
      await run(this.o.tools.busybox, ["mkfifo", "-m", "600", p.stdin]);
      await writeFileAtomic(p.config, JSON.stringify(config));
    } catch (err) {
      throw wrap(`create container ${containerId}`, err);
    }
    undo.commit();
  }

  async startContainer(containerId: string): Promise<void> {
    const p = await this.known(containerId);
    if (await exists(p.supervisorPid)) throw new VmpodError("FailedPrecondition", `container ${containerId} was already started`);
    const config = JSON.parse(await readFile(p.config, "utf8")) as OciSpec;
    const cgroupsPath = config.linux?.cgroupsPath ?? "";
    try {
      startSupervisor({
        busybox: this.o.tools.busybox,
        script: this.o.tools.script,
        runtime: this.o.runtime.path,
        runtimeRoot: this.o.runtime.root,
        containerId,
        paths: p,
        memoryCgroup: this.o.cgroups.memoryDir(cgroupsPath),
        stdin: this.wantsStdin.has(containerId),
        terminal: config.process?.terminal === true,
        keep: await this.o.runtime.supportsKeep(),
      });
      const outcome = await waitForStart(p, START_TIMEOUT_MS);
      if (!outcome.started) {
        const why = outcome.exit ? (await readTail(p.stderr)) || (await readTail(p.stdout)) || `exit ${outcome.exit.status}` : "timed out";
        throw new VmpodError("Internal", `the runtime did not start it: ${why}`);
      }
    } catch (err) {
      throw wrap(`start container ${containerId}`, err);
    }
  }

  io(containerId: string, execId: string, options: { readonly stdin: boolean; readonly terminal: boolean }): ProcessIo {
    if (execId !== "") {
      const exec = this.execs.get(execKey(containerId, execId));
      if (!exec) throw new VmpodError("NotFound", `exec ${execId} not found in container ${containerId}`);
      return exec.io;
    }
    const p = this.paths(containerId);
    const finished = () => exists(p.exit);
    const stdout = this.track(containerId, new OutputTail({ path: p.stdout, finished }));
    const stderr = options.terminal ? undefined : this.track(containerId, new OutputTail({ path: p.stderr, finished }));
    let stdin: Writable | undefined;
    if (options.stdin) {
      this.wantsStdin.add(containerId);
      stdin = this.stdinWriter(containerId, p);
    }
    return {
      stdout,
      ...(stderr ? { stderr } : {}),
      ...(stdin ? { stdin } : {}),
      wait: (o) => this.wait(containerId, "", o ?? {}),
      resize: (rows, columns) => resizeFirstTerminal(p, containerId, rows, columns),
    };
  }

  private track(containerId: string, stream: Readable): Readable {
    let set = this.tails.get(containerId);
    if (!set) this.tails.set(containerId, (set = new Set()));
    set.add(stream);
    stream.once("close", () => set.delete(stream));
    return stream;
  }

  /**
   * The container's input: its FIFO opened read-write and non-blocking (an
   * open that neither waits for the supervisor nor fails without it). The
   * container sees the end of its input when this writer is ended.
   */
  private stdinWriter(containerId: string, p: ContainerPaths): Writable {
    const existing = this.stdinWriters.get(containerId);
    if (existing && !existing.destroyed) return existing;
    let fd: number;
    try {
      fd = openSync(p.stdin, fsConstants.O_RDWR | fsConstants.O_NONBLOCK);
    } catch (err) {
      throw new VmpodError("NotFound", `container ${containerId} has no input`, { cause: err });
    }
    const socket = new Socket({ fd, readable: false, writable: true });
    socket.on("error", () => undefined);
    socket.once("close", () => this.stdinWriters.delete(containerId));
    this.stdinWriters.set(containerId, socket);
    return socket;
  }

  async exec(containerId: string, execId: string, process: OciProcess, options: { readonly stdin: boolean }): Promise<ProcessIo> {
    const p = await this.known(containerId);
    if (!isSafeId(execId)) throw new VmpodError("InvalidArgument", `exec id ${JSON.stringify(execId)} is not a safe name`);
    const key = execKey(containerId, execId);
    if (this.execs.has(key)) throw new VmpodError("AlreadyExists", `exec ${execId} already exists in container ${containerId}`);
    if (!(await this.running(p))) throw new VmpodError("FailedPrecondition", `container ${containerId} is not running`);
    const proc = await startExec({ runtime: this.o.runtime.path, runtimeRoot: this.o.runtime.root, containerId, execId, execDir: p.execDir, process, stdin: options.stdin }).catch(
      (err: unknown) => {
        throw wrap(`exec in container ${containerId}`, err);
      },
    );
    this.execs.set(key, proc);
    void proc.exited.finally(() => setTimeout(() => this.execs.delete(key), EXEC_KEEP_MS).unref());
    return proc.io;
  }

  private async running(p: ContainerPaths): Promise<boolean> {
    return (await exists(p.pid)) && !(await exists(p.exit)) && (await liveSupervisor(p)) !== undefined;
  }

  async signal(containerId: string, execId: string, signal: number): Promise<void> {
    if (execId !== "") {
      const exec = this.execs.get(execKey(containerId, execId));
      if (!exec) throw new VmpodError("NotFound", `exec ${execId} not found in container ${containerId}`);
      exec.signal(signal);
      return;
    }
    const p = await this.known(containerId);
    if (await exists(p.exit)) return;
    await this.o.runtime.kill(containerId, signal).catch((err: unknown) => {
      throw wrap(`signal container ${containerId}`, err);
    });
  }

  async wait(containerId: string, execId: string, options: { readonly signal?: AbortSignal } = {}): Promise<number> {
    if (execId !== "") {
      const exec = this.execs.get(execKey(containerId, execId));
      if (!exec) throw new VmpodError("NotFound", `exec ${execId} not found in container ${containerId}`);
      return exec.io.wait(options.signal ? { signal: options.signal } : {});
    }
    const p = await this.known(containerId);
    const exit = await waitForExit(p, options.signal ? { signal: options.signal } : {});
    if (exit.lost) this.o.logger.warn("a container's supervisor is gone without recording its exit", { container: containerId });
    return exit.status;
  }

  async oomKilled(containerId: string): Promise<boolean> {
    try {
      return ((await readExit(this.paths(containerId)))?.oomKills ?? 0) > 0;
    } catch {
      return false;
    }
  }

  async update(containerId: string, resources: OciResources): Promise<void> {
    await this.known(containerId);
    await this.o.runtime.update(containerId, resources).catch((err: unknown) => {
      throw wrap(`update container ${containerId}`, err);
    });
  }

  async usage(containerId: string): Promise<ContainerUsage> {
    const p = await this.known(containerId);
    const config = JSON.parse(await readFile(p.config, "utf8")) as OciSpec;
    return this.o.cgroups.usage(config.linux?.cgroupsPath ?? "");
  }

  async removeContainer(containerId: string, timeoutSec: number): Promise<void> {
    const p = this.paths(containerId);
    const failures: unknown[] = [];
    for (const stream of this.tails.get(containerId) ?? []) stream.destroy();
    this.tails.delete(containerId);
    this.stdinWriters.get(containerId)?.destroy();
    for (const [key, exec] of this.execs) if (key.startsWith(`${containerId}/`)) exec.signal(9);
    await this.kill(containerId, p, timeoutSec).catch((err: unknown) => failures.push(err));
    await this.o.runtime.delete(containerId).catch((err: unknown) => failures.push(err));
    await unmountTree(p.dir).catch((err: unknown) => failures.push(err));
    await rm(p.dir, { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
    this.wantsStdin.delete(containerId);
    if (failures.length > 0) throw new VmpodError("Internal", `remove container ${containerId}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }

  /** Ends the container (stop signal, then SIGKILL after `timeoutSec`) and its supervisor. */
  private async kill(containerId: string, p: ContainerPaths, timeoutSec: number): Promise<void> {
    const supervisor = await liveSupervisor(p);
    if (supervisor === undefined) return;
    if (!(await exists(p.pid))) {
      // Not started by the runtime yet (its supervisor waits for the input to open): its session goes.
      killGroup(supervisor);
      return;
    }
    const exited = waitForExit(p).then(() => true);
    exited.catch(() => undefined);
    const within = (ms: number) => Promise.race([exited, sleep(ms).then(() => false)]);
    if (timeoutSec > 0) {
      await this.o.runtime.kill(containerId, 15).catch(() => undefined);
      if (await within(timeoutSec * 1000)) return;
    }
    await this.o.runtime.kill(containerId, 9, { all: true }).catch(() => undefined);
    if (await within(SUPERVISOR_EXIT_MS)) return;
    killGroup(supervisor);
  }

  async openPort(port: number): Promise<Duplex> {
    return openPodPort(this.o.paths.net, port, { nsenter: this.o.tools.nsenter, busybox: this.o.tools.busybox });
  }

  /** Removes every container, the namespaces, the runtime's state, the pod's cgroup parents and its directory. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop().finally(() => this.markGone());
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const failures: unknown[] = [];
    let ids: string[] = [];
    try {
      ids = (await readdir(this.o.paths.containers)).filter(isSafeId);
    } catch {
      ids = [];
    }
    for (const id of ids) await this.removeContainer(id, 0).catch((err: unknown) => failures.push(err));
    // Containers the runtime knows without a directory (a crash mid-create).
    const left = await this.o.runtime.list().catch(() => []);
    for (const s of left) await this.o.runtime.delete(s.id).catch((err: unknown) => failures.push(err));
    await removePodNamespaces(this.o.paths).catch((err: unknown) => failures.push(err));
    await this.o.cgroups.removeEmpty(`/vmpod/${this.id}`).catch(() => undefined);
    await unmountTree(this.o.paths.root).catch((err: unknown) => failures.push(err));
    await rm(this.o.paths.root, { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
    if (this.o.afterStop) await this.o.afterStop().catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw new VmpodError("Internal", `stop pod ${this.id}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }
}

/** SIGKILLs a supervisor's session (its process group: the shell and the runtime it runs). */
function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // gone meanwhile
  }
}

function execKey(containerId: string, execId: string): string {
  return `${containerId}/${execId}`;
}

/** The last bytes of a small file, trimmed: a runtime's error message. */
async function readTail(path: string): Promise<string> {
  try {
    const text = await readFile(path, "utf8");
    return text.slice(-2000).trim();
  } catch {
    return "";
  }
}
