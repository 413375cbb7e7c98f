/**
 * The OCI runtime's command line (runc or crun; both take these): state,
 * kill, delete, update, and whether `run --keep` is known. Each pod has its
 * own runtime root, so `list` is that pod's containers.
 */
import { VmpodError } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import type { OciResources } from "../../common/oci-spec.js";

export interface RuntimeState {
  readonly id: string;
  readonly pid: number;
  /** "creating", "created", "running", "stopped" (or "paused"). */
  readonly status: string;
}

export class RuntimeCli {
  private keepProbe: Promise<boolean> | undefined;

  constructor(
    readonly path: string,
    readonly root: string,
  ) {}

  private run(args: readonly string[], input?: string) {
    return run(this.path, ["--root", this.root, ...args], { whenMissing: `install the OCI runtime ${this.path} (Debian package runc or crun)`, ...(input === undefined ? {} : { input }) });
  }

  /** Whether `run --keep` exists: the container and its cgroup stay after it exits, until `delete`. */
  supportsKeep(): Promise<boolean> {
    this.keepProbe ??= run(this.path, ["run", "--help"], { whenMissing: `install the OCI runtime ${this.path}` }).then(
      (r) => r.stdout.includes("--keep"),
      () => false,
    );
    return this.keepProbe;
  }

  /** The container's state, or undefined when the runtime does not know it. */
  async state(id: string): Promise<RuntimeState | undefined> {
    const list = await this.list();
    return list.find((s) => s.id === id);
  }

  async list(): Promise<RuntimeState[]> {
    const { stdout } = await this.run(["list", "--format", "json"]);
    const parsed = JSON.parse(stdout.trim() || "null") as { id: string; pid: number; status: string }[] | null;
    return (parsed ?? []).map((s) => ({ id: s.id, pid: s.pid, status: s.status }));
  }

  /** Sends a signal to the container's first process; a container that is not running is FailedPrecondition. */
  async kill(id: string, signal: number, options: { all?: boolean } = {}): Promise<void> {
    const state = await this.state(id);
    if (!state || state.status === "stopped") throw new VmpodError("FailedPrecondition", `container ${id} is not running`);
    await this.run(["kill", ...(options.all ? ["--all"] : []), id, String(signal)]);
  }

  /** Removes the container from the runtime (killing what is left); an unknown one is fine. */
  async delete(id: string): Promise<void> {
    if (!(await this.state(id))) return;
    await this.run(["delete", "--force", id]);
  }

  /** Applies new resources to a running container. */
  async update(id: string, resources: OciResources): Promise<void> {
    // Device rules are fixed at creation; cgroup v2 and hugepage entries pass as the runtime reads them.
    const rest: OciResources = { ...resources };
    delete rest.devices;
    await this.run(["update", "--resources", "-", id], JSON.stringify(rest));
  }
}
