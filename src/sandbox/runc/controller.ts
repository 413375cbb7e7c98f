/**
 * The runc runtime handler: trusted pods as plain namespace containers on
 * the host, through an OCI runtime binary (runc, or crun), with vmpod
 * supervising the processes itself (no conmon).
 *
 * A pod is its network, IPC and UTS namespaces, made by `unshare` and kept
 * alive by bind mounts of their nsfs files under the pod's state directory,
 * with no process (namespaces.ts); its containers join them by path. A
 * container is an overlay of its image's layers mounted as the bundle's
 * rootfs, a config.json, and, once started, a detached busybox `sh`
 * supervisor running the runtime in the foreground, appending output to
 * files and recording the exit status and OOM kills in a file
 * (supervisor.ts): containers keep running, their output is kept and their
 * exits recorded while the daemon is down, and `recover()` finds all of it
 * again from the state directory.
 *
 * Options: `runtimePath` is the runtime binary; `stateRoot` holds one
 * directory per pod (e.g. <vmpod state root>/runc).
 */
import { mkdir, rm } from "node:fs/promises";
import { VmpodError, messageOf, wrap } from "../../common/errors.js";
import { exists, writeFileAtomic } from "../../common/fs.js";
import { isSafeId } from "../../common/ids.js";
import type { Logger } from "../../common/log.js";
import { Rollback } from "../../common/rollback.js";
import type { PodNetwork } from "../../network/types.js";
import type { PodCreateRequest, PodSandbox, SandboxController } from "../controller.js";
import { podNetworkRequest, usableNetwork } from "../pod-network-request.js";
import type { PodConfig } from "../types.js";
import { Cgroups } from "./cgroups.js";
import { podPaths } from "./layout.js";
import { createPodNamespaces, DEFAULT_NAMESPACE_TOOLS, podNamespacesAlive } from "./namespaces.js";
import { RuncPod } from "./pod.js";
import { RuntimeCli } from "./runtime-cli.js";

export interface RuncControllerOptions {
  /** The handler's name (RuntimeClass handler); default "runc". */
  readonly handler?: string;
  /** The OCI runtime binary: /usr/bin/runc or /usr/bin/crun. */
  readonly runtimePath: string;
  readonly stateRoot: string;
  readonly logger: Logger;
  /** busybox-static, for the supervisors, hostname, mkfifo and nc (default /bin/busybox). */
  readonly busybox?: string;
  /** util-linux script(1), for containers with a terminal (default /usr/bin/script). */
  readonly script?: string;
  readonly unshare?: string;
  readonly nsenter?: string;
  readonly ip?: string;
  /** Where the cgroup hierarchies are mounted (default /sys/fs/cgroup). */
  readonly cgroupRoot?: string;
  /** Pods' networks (CNI); absent or not ready, a pod has a network namespace with loopback alone. */
  readonly network?: PodNetwork;
}

export class RuncController implements SandboxController {
  readonly handler: string;
  private readonly cgroups: Cgroups;

  constructor(private readonly options: RuncControllerOptions) {
    this.handler = options.handler ?? "runc";
    this.cgroups = new Cgroups(options.cgroupRoot);
  }

  async create(request: PodCreateRequest): Promise<PodSandbox> {
    const { id, config } = request;
    if (!isSafeId(id)) throw new VmpodError("InvalidArgument", `pod id ${JSON.stringify(id)} is not a safe name`);
    const paths = podPaths(this.options.stateRoot, id);
    if (await exists(paths.root)) throw new VmpodError("AlreadyExists", `runc pod ${id} already has state at ${paths.root}`);
    const hostname = config.hostname || config.metadata.name;
    await using undo = new Rollback();
    let ips: readonly string[] = [];
    try {
      await mkdir(paths.root, { recursive: true, mode: 0o700 });
      undo.push("remove pod dir", () => rm(paths.root, { recursive: true, force: true }));
      await writeFileAtomic(paths.podFile, JSON.stringify({ id, handler: this.handler, hostname }));
      await mkdir(paths.containers, { mode: 0o700 });
      await mkdir(paths.runtimeRoot, { mode: 0o700 });
      const network = await this.attachNetwork(request);
      if (network) undo.push("tear down network", () => this.tearDownNetwork(id));
      ips = network?.ips ?? [];
      await createPodNamespaces(paths, hostname, this.namespaceTools(), network ? { netnsPath: network.netnsPath } : {});
      undo.push("remove namespaces", () => this.pod(id).stop());
    } catch (err) {
      throw wrap(`create runc pod ${id}`, err);
    }
    undo.commit();
    return this.pod(id, ips);
  }

  /**
   * The pod's CNI network, its containers in the netns itself. None for a
   * pod on the node's network (its containers join the host's), nor while
   * CNI is not ready (then the pod has loopback alone, and host ports are
   * refused).
   */
  private async attachNetwork(request: PodCreateRequest): Promise<{ netnsPath: string; ips: readonly string[] } | undefined> {
    if (request.config.namespaces.network === "NODE") return undefined;
    const network = await usableNetwork(this.options.network, request, this.options.logger);
    return network?.setUp(podNetworkRequest(request, { vmLink: false }));
  }

  private async tearDownNetwork(id: string): Promise<void> {
    await this.options.network?.tearDown(id);
  }

  async recover(id: string, _config: PodConfig): Promise<PodSandbox | undefined> {
    if (!isSafeId(id)) return undefined;
    const paths = podPaths(this.options.stateRoot, id);
    if (!(await exists(paths.root))) return undefined;
    if (await podNamespacesAlive(paths)) return this.pod(id, (await this.options.network?.find(id))?.ips ?? []);
    const pod = this.pod(id);
    // The namespaces are gone (a reboot, someone unmounted them): nothing of the pod can be trusted.
    await pod.stop().catch((err: unknown) => this.options.logger.warn("could not clean up a runc pod left from before", { pod: id, err: messageOf(err) }));
    return undefined;
  }

  private pod(id: string, ips: readonly string[] = []): RuncPod {
    const paths = podPaths(this.options.stateRoot, id);
    return new RuncPod({
      id,
      ips,
      afterStop: () => this.tearDownNetwork(id),
      handler: this.handler,
      paths,
      runtime: new RuntimeCli(this.options.runtimePath, paths.runtimeRoot),
      cgroups: this.cgroups,
      tools: {
        busybox: this.options.busybox ?? DEFAULT_NAMESPACE_TOOLS.busybox,
        script: this.options.script ?? "/usr/bin/script",
        nsenter: this.options.nsenter ?? DEFAULT_NAMESPACE_TOOLS.nsenter,
      },
      logger: this.options.logger.child({ pod: id }),
    });
  }

  private namespaceTools() {
    return {
      unshare: this.options.unshare ?? DEFAULT_NAMESPACE_TOOLS.unshare,
      nsenter: this.options.nsenter ?? DEFAULT_NAMESPACE_TOOLS.nsenter,
      ip: this.options.ip ?? DEFAULT_NAMESPACE_TOOLS.ip,
      busybox: this.options.busybox ?? DEFAULT_NAMESPACE_TOOLS.busybox,
    };
  }
}

export { RuncPod } from "./pod.js";
