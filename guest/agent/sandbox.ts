/**
 * The sandbox: the pod this guest is. Its hostname and DNS, the storages
 * every container may use (the shared directory), its containers and its
 * forwarded connections.
 */
import { readlink, realpath } from "node:fs/promises";
import { dirname, resolve } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import { writeFileAtomic } from "../../src/common/fs.js";
import type { Logger } from "../../src/common/log.js";
import { Rollback } from "../../src/common/rollback.js";
import { Container, type ContainerDeps } from "./container.js";
import type { OciConfig } from "./oci-spec.js";
import type { PortForwarder } from "./port-forward.js";
import { adaptForGuest, checkId } from "./spec-policy.js";
import { StorageRegistry, type StorageSpec } from "./storage.js";
import { applySysctls, splitGuestSysctls } from "./sysctl.js";

export interface SandboxDeps extends ContainerDeps {
  readonly storages: StorageRegistry;
  readonly ports: PortForwarder;
  readonly resolvConf: string;
  readonly hostnameFile: string;
  /** /proc/sys, where the pod's sysctls are set. */
  readonly procSysDir?: string;
  setHostname(name: string): void;
}

/** How long DestroySandbox waits for each container's processes to die after SIGKILL. */
const DESTROY_KILL_TIMEOUT_SEC = 10;
const HOSTNAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export class Sandbox {
  private readonly containers = new Map<string, Container>();
  private readonly pending = new Set<string>();
  private readonly log: Logger;

  private constructor(
    private readonly deps: SandboxDeps,
    readonly id: string,
    /** Mount points of the sandbox's own storages. */
    private readonly shared: readonly string[],
  ) {
    this.log = deps.log.child({ sandboxId: id });
  }

  static async create(deps: SandboxDeps, req: { id: string; hostname: string; dns: readonly string[]; storages: readonly StorageSpec[] }): Promise<Sandbox> {
    checkId("sandbox id", req.id);
    if (req.hostname !== "" && (req.hostname.length > 64 || !HOSTNAME.test(req.hostname))) {
      throw new VmpodError("InvalidArgument", `bad hostname ${JSON.stringify(req.hostname)}`);
    }
    for (const line of req.dns) {
      if (/[\n\r\0]/.test(line)) throw new VmpodError("InvalidArgument", `bad DNS line ${JSON.stringify(line)}`);
    }
    for (const s of req.storages) StorageRegistry.validate(s);

    await using undo = new Rollback();
    const mountPoints: string[] = [];
    for (const s of req.storages) {
      mountPoints.push(await deps.storages.acquire(s));
      undo.push(`release ${s.mountPoint}`, () => deps.storages.release(s.mountPoint));
    }
    if (req.hostname !== "") {
      deps.setHostname(req.hostname);
      await writeFileAtomic(await resolveLinkTarget(deps.hostnameFile), `${req.hostname}\n`, 0o644);
    }
    if (req.dns.length > 0) {
      const target = await resolveLinkTarget(deps.resolvConf);
      await writeFileAtomic(target, req.dns.map((l) => l + "\n").join(""), 0o644);
    }
    undo.commit();
    const sandbox = new Sandbox(deps, req.id, mountPoints);
    sandbox.log.info("sandbox created", { hostname: req.hostname, storages: mountPoints });
    return sandbox;
  }

  container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw new VmpodError("NotFound", `no container ${JSON.stringify(id)}`);
    return c;
  }

  get containerIds(): string[] {
    return [...this.containers.keys()];
  }

  async createContainer(req: { id: string; execId: string; storages: readonly StorageSpec[]; config: OciConfig }): Promise<Container> {
    checkId("container id", req.id);
    const execId = req.execId === "" ? req.id : req.execId;
    checkId("exec id", execId);
    if (this.containers.has(req.id) || this.pending.has(req.id)) throw new VmpodError("AlreadyExists", `container ${req.id} already exists`);
    for (const s of req.storages) StorageRegistry.validate(s);
    this.pending.add(req.id);
    try {
      await using undo = new Rollback();
      const held: string[] = [];
      for (const s of req.storages) {
        held.push(await this.deps.storages.acquire(s));
        undo.push(`release ${s.mountPoint}`, () => this.deps.storages.release(s.mountPoint));
      }
      const adapted = await adaptForGuest(req.config, { containerId: req.id, allowedRoots: [...this.shared, ...held] });
      const { config, guest: sysctls } = splitGuestSysctls(adapted);
      await applySysctls(sysctls, this.deps.procSysDir);
      const cgroupsPath = config.linux?.cgroupsPath;
      for (const other of this.containers.values()) {
        if (other.cgroupsPath === cgroupsPath) throw new VmpodError("AlreadyExists", `container ${other.id} already uses cgroup ${cgroupsPath}`);
      }
      const container = await Container.create(this.deps, { id: req.id, initExecId: execId, config, storages: held });
      this.containers.set(req.id, container);
      undo.commit();
      return container;
    } finally {
      this.pending.delete(req.id);
    }
  }

  async removeContainer(id: string, timeoutSec: number): Promise<void> {
    const c = this.container(id);
    await c.remove(timeoutSec);
    this.containers.delete(id);
    // The latest first: an overlay before the layers under it.
    const failures: unknown[] = [];
    for (const mountPoint of [...c.storages].reverse()) {
      await this.deps.storages.release(mountPoint).catch((err: unknown) => failures.push(err));
    }
    if (failures.length > 0) throw new AggregateError(failures, `remove container ${id}: release storages`);
  }

  /** Kills and removes every container, closes forwarded connections, releases the storages. */
  async destroy(): Promise<void> {
    const failures: unknown[] = [];
    this.deps.ports.closeAll();
    for (const id of [...this.containers.keys()]) {
      await this.removeContainer(id, DESTROY_KILL_TIMEOUT_SEC).catch((err: unknown) => failures.push(err));
    }
    await this.deps.storages.releaseAll().catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw new AggregateError(failures, `destroy sandbox: ${failures.length} step(s) failed`);
    this.log.info("sandbox destroyed");
  }
}

/** Where writing `path` lands: the final target of its symlinks, even one that does not exist yet. */
async function resolveLinkTarget(path: string): Promise<string> {
  let current = path;
  for (let hops = 0; hops < 16; hops++) {
    try {
      return await realpath(current);
    } catch {
      // dangling (the target is created by the write) or missing
    }
    let link: string;
    try {
      link = await readlink(current);
    } catch {
      return current;
    }
    current = resolve(dirname(current), link);
  }
  throw new VmpodError("InvalidArgument", `${path}: too many levels of symbolic links`);
}
