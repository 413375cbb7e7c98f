/**
 * The agent's state: the sandbox (at most one), and what containers need
 * (libc through koffi, the reaper, crun), set up by `warmUp` while the agent
 * waits for its channel, or else on first use.
 */
import { join } from "node:path";
import { mkdir, rm } from "node:fs/promises";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { Crun } from "./crun.js";
import { OomMonitor } from "./oom.js";
import type { AgentOptions } from "./options.js";
import { PortForwarder } from "./port-forward.js";
import { Reaper } from "./reaper.js";
import type { CommandRunner } from "./run.js";
import { Sandbox, type SandboxDeps } from "./sandbox.js";
import type { StorageSpec } from "./storage.js";
import { StorageRegistry } from "./storage.js";

export type Libc = typeof import("./libc.js");

export class Agent {
  private sandboxState: Sandbox | undefined;
  private deps: Promise<SandboxDeps> | undefined;
  private libcModule: Promise<Libc> | undefined;
  /** CreateSandbox and DestroySandbox run one at a time. */
  private lifecycle: Promise<unknown> = Promise.resolve();
  private consoleSockets = 0;
  readonly oom: OomMonitor;
  readonly ports: PortForwarder;

  constructor(
    readonly options: AgentOptions,
    readonly log: Logger,
    private readonly runner: CommandRunner,
  ) {
    this.oom = new OomMonitor(log);
    this.ports = new PortForwarder(log);
  }

  /** libc through koffi, loaded once. */
  libc(): Promise<Libc> {
    this.libcModule ??= import("./libc.js");
    return this.libcModule;
  }

  /**
   * Sets up now what the first sandbox needs: libc loaded through koffi,
   * the reaper started, the state directories made. Under TCG this costs a
   * VM that has just booted most of a second; done before the agent serves,
   * a VM saved as a template once its agent answered holds it, and pods
   * restored from it skip it (their first SetGuestDateTime waited for libc).
   * A failure is left for CreateSandbox to report (setup is tried again).
   *
   * crun is not run here: measured by QEMU's CPU time over four restores
   * each, a template that had run `crun --version` made restored pods no
   * faster to their first container, rather slower.
   */
  async warmUp(): Promise<void> {
    await this.prepare();
  }

  get sandbox(): Sandbox {
    if (!this.sandboxState) throw new VmpodError("FailedPrecondition", "no sandbox: CreateSandbox first");
    return this.sandboxState;
  }

  /** Throws FailedPrecondition before CreateSandbox. */
  requireSandbox(): Sandbox {
    return this.sandbox;
  }

  get hasSandbox(): boolean {
    return this.sandboxState !== undefined;
  }

  createSandbox(req: { id: string; hostname: string; dns: readonly string[]; storages: readonly StorageSpec[] }): Promise<void> {
    return this.serialized(async () => {
      if (this.sandboxState) throw new VmpodError("AlreadyExists", `sandbox ${this.sandboxState.id} already exists`);
      this.sandboxState = await Sandbox.create(await this.prepare(), req);
    });
  }

  destroySandbox(): Promise<void> {
    return this.serialized(async () => {
      const sandbox = this.sandbox;
      await sandbox.destroy();
      this.sandboxState = undefined;
    });
  }

  /** Stops what the agent runs in the background (for a clean exit). */
  close(): void {
    this.oom.close();
    this.ports.closeAll();
    void this.deps?.then((d) => d.reaper.stop(), () => undefined);
  }

  private serialized<T>(step: () => Promise<T>): Promise<T> {
    const result = this.lifecycle.then(step);
    this.lifecycle = result.catch(() => undefined);
    return result;
  }

  private prepare(): Promise<SandboxDeps> {
    if (!this.deps) {
      const deps = this.build();
      this.deps = deps;
      // A failed setup (crun's state directory unwritable...) is tried again by the next call.
      deps.catch(() => {
        if (this.deps === deps) this.deps = undefined;
      });
    }
    return this.deps;
  }

  private async build(): Promise<SandboxDeps> {
    const libc = await this.libc();
    const { stateDir } = this.options;
    const bundlesDir = join(stateDir, "containers");
    const consoleDir = join(stateDir, "tty");
    const crunRoot = join(stateDir, "crun");
    await mkdir(bundlesDir, { recursive: true, mode: 0o700 });
    await rm(consoleDir, { recursive: true, force: true });
    await mkdir(consoleDir, { recursive: true, mode: 0o700 });
    await mkdir(crunRoot, { recursive: true, mode: 0o700 });
    const reaper = new Reaper(libc, this.log, (pid) => this.runner.owns(pid));
    reaper.start();
    return {
      libc,
      reaper,
      log: this.log,
      crun: new Crun(this.runner, this.options.crun, crunRoot),
      bundlesDir,
      cgroupRoot: this.options.cgroupRoot,
      oom: this.oom,
      consoleSocketPath: () => join(consoleDir, `${++this.consoleSockets}.sock`),
      storages: new StorageRegistry(libc, this.log, { modulesReady: this.options.modulesReady, scratchDir: join(stateDir, "overlay") }),
      ports: this.ports,
      resolvConf: this.options.resolvConf,
      hostnameFile: this.options.hostnameFile,
      setHostname: (name) => libc.setHostname(name),
    };
  }
}
