/**
 * One container in the guest: its bundle under the agent's state directory,
 * crun's record of it, its first process and the processes exec'd into it.
 */
import { mkdir, rm, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { Rollback } from "../../src/common/rollback.js";
import { cgroupDir, readStats, type CgroupStats } from "./cgroups.js";
import { launch, type LaunchDeps } from "./launch.js";
import type { OciConfig, OciProcessJson, OciResourcesJson } from "./oci-spec.js";
import { renderJson } from "./oci-spec.js";
import type { OomMonitor } from "./oom.js";
import { MAX_SIGNAL, type ContainerProcess } from "./process.js";

export interface ContainerDeps extends LaunchDeps {
  /** Parent of the containers' bundles. */
  readonly bundlesDir: string;
  readonly cgroupRoot: string;
  readonly oom: OomMonitor;
  /** A fresh, short path for a console socket. */
  consoleSocketPath(): string;
}

export type ContainerState = "created" | "running" | "stopped";

/** Exited exec'd processes kept (for a second wait) once their output is read. */
const MAX_FINISHED_EXECS = 256;

export class Container {
  private started = false;
  private removing = false;
  private readonly execs = new Map<string, ContainerProcess>();
  private readonly reserved = new Set<string>();
  private readonly log: Logger;

  private constructor(
    private readonly deps: ContainerDeps,
    readonly id: string,
    readonly bundle: string,
    readonly cgroupsPath: string,
    readonly init: ContainerProcess,
    /** Storage mount points the container holds (released when it is removed). */
    readonly storages: readonly string[],
  ) {
    this.log = deps.log.child({ containerId: id });
  }

  /** `crun create`: the container exists and its first process waits for StartContainer. */
  static async create(deps: ContainerDeps, req: { id: string; initExecId: string; config: OciConfig; storages: readonly string[] }): Promise<Container> {
    const bundle = join(deps.bundlesDir, req.id);
    const cgroupsPath = req.config.linux?.cgroupsPath;
    if (cgroupsPath === undefined) throw new VmpodError("Internal", "the container's config has no cgroupsPath");
    await using undo = new Rollback();
    await rm(bundle, { recursive: true, force: true });
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    undo.push("remove bundle", () => rm(bundle, { recursive: true, force: true }));
    await writeFile(join(bundle, "config.json"), renderJson(req.config), { mode: 0o600 });
    const init = await launch(deps, {
      containerId: req.id,
      execId: req.initExecId,
      terminal: req.config.process?.terminal ?? false,
      ...consoleSizeOf(req.config.process),
      pidFile: join(bundle, "init.pid"),
      logFile: join(bundle, "crun.log"),
      consoleSocketPath: deps.consoleSocketPath(),
      create: { bundle },
    });
    undo.push("delete the container", async () => {
      init.kill(9);
      init.io.close();
      await deps.crun.delete(req.id);
    });
    const container = new Container(deps, req.id, bundle, cgroupsPath, init, req.storages);
    await deps.oom.watch(req.id, join(cgroupDir(deps.cgroupRoot, cgroupsPath), "memory.events"));
    undo.commit();
    container.log.info("container created", { pid: init.pid, bundle });
    return container;
  }

  get state(): ContainerState {
    if (!this.init.running) return "stopped";
    return this.started ? "running" : "created";
  }

  async start(): Promise<void> {
    if (this.removing) throw new VmpodError("FailedPrecondition", `container ${this.id} is being removed`);
    if (this.state !== "created") throw new VmpodError("FailedPrecondition", `container ${this.id} is ${this.state}, not created`);
    await this.deps.crun.start(this.id);
    this.started = true;
    this.log.info("container started");
  }

  /** Runs another process in the running container (`crun exec`). */
  async exec(execId: string, process: OciProcessJson): Promise<void> {
    if (execId === this.init.execId || this.execs.has(execId) || this.reserved.has(execId)) {
      throw new VmpodError("AlreadyExists", `container ${this.id} already has a process ${execId}`);
    }
    if (this.removing) throw new VmpodError("FailedPrecondition", `container ${this.id} is being removed`);
    if (this.state !== "running") throw new VmpodError("FailedPrecondition", `container ${this.id} is ${this.state}, not running`);
    this.reserved.add(execId);
    const processFile = join(this.bundle, `exec-${execId}.json`);
    try {
      await writeFile(processFile, renderJson(process), { mode: 0o600 });
      const p = await launch(this.deps, {
        containerId: this.id,
        execId,
        terminal: process.terminal,
        ...consoleSizeOf(process),
        pidFile: join(this.bundle, `exec-${execId}.pid`),
        logFile: join(this.bundle, `exec-${execId}.log`),
        consoleSocketPath: this.deps.consoleSocketPath(),
        exec: { processFile },
      });
      this.execs.set(execId, p);
      this.log.info("process exec'd", { execId, pid: p.pid });
    } finally {
      this.reserved.delete(execId);
      await rm(processFile, { force: true });
    }
  }

  /** The process `execId` names: empty or the first process's id for the first process. */
  process(execId: string): ContainerProcess {
    if (execId === "" || execId === this.init.execId) return this.init;
    const p = this.execs.get(execId);
    if (!p) throw new VmpodError("NotFound", `container ${this.id} has no process ${JSON.stringify(execId)}`);
    return p;
  }

  signal(execId: string, signal: number): void {
    if (!Number.isInteger(signal) || signal < 1 || signal > MAX_SIGNAL) throw new VmpodError("InvalidArgument", `bad signal ${signal}`);
    this.process(execId).kill(signal);
  }

  async wait(execId: string, signal?: AbortSignal): Promise<number> {
    const p = this.process(execId);
    const status = await p.wait(signal);
    this.retire();
    return status;
  }

  /** Drops what exited exec'd processes hold once their output is read, and the oldest of them past a limit. */
  retire(): void {
    const finished = [...this.execs.values()].filter((p) => p.finished);
    for (const p of finished) p.io.close();
    for (const p of finished.slice(0, Math.max(0, finished.length - MAX_FINISHED_EXECS))) this.execs.delete(p.execId);
  }

  /**
   * Kills what remains of the container (SIGKILL), waits for it to die
   * (`timeoutSec` 0: as long as it takes), and deletes it.
   */
  async remove(timeoutSec: number): Promise<void> {
    this.removing = true;
    const processes = [this.init, ...this.execs.values()];
    if (processes.some((p) => p.running)) {
      await this.deps.crun.kill(this.id, 9, true).catch((err: unknown) => this.log.debug("crun kill", { err }));
      for (const p of processes) p.kill(9);
      const exited = Promise.all(processes.map((p) => p.whenExited()));
      if (timeoutSec > 0) {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = new Promise<"timeout">((resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutSec * 1000)));
        const outcome = await Promise.race([exited, timedOut]);
        clearTimeout(timer);
        if (outcome === "timeout") {
          this.removing = false;
          throw new VmpodError("DeadlineExceeded", `processes of container ${this.id} still alive ${timeoutSec} s after SIGKILL`);
        }
      } else {
        await exited;
      }
    }
    await this.deps.crun.delete(this.id).catch(async (err: unknown) => {
      // Nothing to delete is as good as deleted.
      if ((await this.deps.crun.state(this.id)) !== undefined) throw err;
    });
    this.deps.oom.unwatch(this.id);
    for (const p of processes) p.io.close();
    await rm(this.bundle, { recursive: true, force: true });
    // crun removes the cgroup; one left behind (busy at the time) is tried once more.
    await rmdir(cgroupDir(this.deps.cgroupRoot, this.cgroupsPath)).catch(() => undefined);
    this.log.info("container removed");
  }

  async update(resources: OciResourcesJson): Promise<void> {
    if (this.state === "stopped") throw new VmpodError("FailedPrecondition", `container ${this.id} has stopped`);
    const file = join(this.bundle, "resources.json");
    await writeFile(file, renderJson(resources), { mode: 0o600 });
    try {
      await this.deps.crun.update(this.id, file);
    } finally {
      await rm(file, { force: true });
    }
  }

  stats(): Promise<CgroupStats> {
    return readStats(cgroupDir(this.deps.cgroupRoot, this.cgroupsPath));
  }
}

function consoleSizeOf(p: OciProcessJson | undefined): { consoleSize?: { rows: number; columns: number } } {
  if (!p?.terminal || !p.consoleSize) return {};
  return { consoleSize: { rows: p.consoleSize.height, columns: p.consoleSize.width } };
}
