/**
 * The VM runtime handler: each pod is a PodVm booted by the engine. The VM
 * is sized from the pod's resources (its limits and overhead, kubelet's
 * sums) on top of the configured defaults; host paths a container mounts
 * are bind-mounted into the pod's shared directory and reach the guest
 * over virtio-fs; OOM kills are read from the agent's event stream.
 */
import { closeSync } from "node:fs";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Duplex } from "node:stream";
import { VmpodError, messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { bindMount, unmountTree } from "../common/mount.js";
import type { OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import { sleep } from "../common/time.js";
import { agentPortStream } from "../agent/streams.js";
import type { RootfsLayers } from "../image/types.js";
import type { GuestNic, GuestRoute, PodNetwork, PodNetworkAttachment } from "../network/types.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { ContainerUsage, PodCreateRequest, PodSandbox, SandboxController, SharedMount } from "./controller.js";
import type { VmEngine } from "./engine.js";
import { containerHostDir, GUEST_SHARED_DIR } from "./layout.js";
import type { PodVm } from "./pod-vm.js";
import type { ProcessIo } from "./process-io.js";
import { podNetworkRequest, usableNetwork } from "./pod-network-request.js";
import type { LinuxResources, PodConfig } from "./types.js";

const MIB = 1024 * 1024;
/** How long after a container's exit its OOM event may still arrive. */
const OOM_EVENT_GRACE_MS = 300;
/** How long a restarted vmpod tries to take over one pod's VM. */
const REATTACH_TIMEOUT_MS = 30_000;

export interface VmSizing {
  readonly defaultVcpus: number;
  readonly defaultMemoryMiB: number;
}

/** The VM's vCPUs and memory: the defaults plus what the pod's limits and overhead ask. */
export function vmSize(sizing: VmSizing, resources: LinuxResources | undefined): { vcpus: number; memoryMiB: number } {
  let vcpus = sizing.defaultVcpus;
  let memoryMiB = sizing.defaultMemoryMiB;
  if (resources?.cpuQuota !== undefined && resources.cpuQuota > 0 && (resources.cpuPeriod ?? 0) > 0) {
    vcpus += Math.ceil(resources.cpuQuota / (resources.cpuPeriod as number));
  }
  if (resources?.memoryLimitBytes !== undefined && resources.memoryLimitBytes > 0) {
    memoryMiB += Math.ceil(resources.memoryLimitBytes / MIB);
  }
  // QEMU's (and the VM spec's) limit.
  return { vcpus: Math.min(vcpus, 255), memoryMiB };
}

export class VmController implements SandboxController {
  readonly handler: string;

  constructor(
    private readonly engine: VmEngine,
    private readonly sizing: VmSizing,
    private readonly logger: Logger,
    handler = "vmpod",
    /** Pods' networks (CNI); absent, pods run without one. */
    private readonly network?: PodNetwork,
  ) {
    this.handler = handler;
  }

  async create(request: PodCreateRequest): Promise<PodSandbox> {
    const { config } = request;
    if (config.namespaces.network === "NODE") {
      throw new VmpodError("InvalidArgument", `pod ${config.metadata.namespace}/${config.metadata.name} asks for the node's network (hostNetwork), which a pod in a VM cannot share: run it with the runc handler (a RuntimeClass)`);
    }
    const size = vmSize(this.sizing, request.resources);
    const dns = request.dns ? dnsLines(request.dns) : [];
    const hostname = config.hostname || config.metadata.name;
    const attachment = await this.attachNetwork(request);
    let vm: PodVm;
    try {
      vm = await this.engine.boot({
        id: request.id,
        hostname,
        dns,
        vcpus: size.vcpus,
        memoryMiB: size.memoryMiB,
        ...(attachment ? { network: { tapFd: attachment.tapFd, nic: interfaceOf(attachment.nic), routes: attachment.routes.map(routeOf) } } : {}),
        ...(request.signal ? { signal: request.signal } : {}),
      });
    } catch (err) {
      if (attachment) await this.tearDownNetwork(request.id);
      throw err;
    } finally {
      // QEMU has its own copy from here on (or never will).
      if (attachment) closeSync(attachment.tapFd);
    }
    try {
      const podIp = attachment?.ips[0];
      const podFiles = await writePodFiles(join(vm.paths.sharedDir, POD_FILES_DIR), { hostname, resolvConf: dns, hosts: [`127.0.0.1\tlocalhost`, `::1\tlocalhost ip6-localhost ip6-loopback`, `${podIp ?? "127.0.1.1"}\t${hostname}`] });
      return new VmSandbox(vm, this.handler, size, podFiles, attachment?.ips ?? [], this.logger.child({ pod: request.id }), () => this.tearDownNetwork(request.id));
    } catch (err) {
      await vm.stop().catch(() => undefined);
      if (attachment) await this.tearDownNetwork(request.id);
      throw err;
    }
  }

  /** The pod's network from CNI with the tap its VM gets (see usableNetwork for pods without one). */
  private async attachNetwork(request: PodCreateRequest): Promise<(PodNetworkAttachment & { readonly tapFd: number }) | undefined> {
    const network = await usableNetwork(this.network, request, this.logger);
    if (!network) return undefined;
    const attachment = await network.setUp(podNetworkRequest(request));
    if (attachment.tapFd === undefined) {
      await this.tearDownNetwork(request.id);
      throw new VmpodError("Internal", `the network of pod ${request.id} came without a device for its VM`);
    }
    return { ...attachment, tapFd: attachment.tapFd };
  }

  /** Tears down the pod's network, if there is one; logs rather than throws on the way out of a failure. */
  private async tearDownNetwork(id: string): Promise<void> {
    await this.network?.tearDown(id).catch((err: unknown) => this.logger.warn("could not tear down a pod's network", { pod: id, err: messageOf(err) }));
  }

  /**
   * Takes the pod's VM over when it outlived vmpod. When it cannot (QEMU
   * died meanwhile, say), what is left of the VM is stopped and its state
   * removed, and the pod reports NOTREADY.
   */
  async recover(id: string, _config: PodConfig): Promise<PodSandbox | undefined> {
    try {
      const vm = await this.engine.reattach(id, AbortSignal.timeout(REATTACH_TIMEOUT_MS));
      const attachment = await this.network?.find(id);
      this.logger.info("took over a pod vm that outlived the restart", { pod: id });
      return new VmSandbox(vm, this.handler, vm.size, podFilePaths(), attachment?.ips ?? [], this.logger.child({ pod: id }), () => this.tearDownNetwork(id));
    } catch (err) {
      this.logger.warn("could not take over a pod vm after the restart; removing what is left of it", { pod: id, err: messageOf(err) });
    }
    await this.engine.cleanupLeftovers(id).catch((err: unknown) => this.logger.warn("could not clean up a pod vm left from before", { pod: id, err: messageOf(err) }));
    await this.tearDownNetwork(id);
    return undefined;
  }
}

class VmSandbox implements PodSandbox {
  readonly gone: Promise<void>;
  private readonly oomKills = new Set<string>();
  private readonly oomWatch = new AbortController();

  constructor(
    private readonly vm: PodVm,
    readonly handler: string,
    private readonly size: { vcpus: number; memoryMiB: number },
    readonly podFiles: { readonly hostname: string; readonly resolvConf: string; readonly hosts: string },
    readonly ips: readonly string[],
    private readonly logger: Logger,
    private readonly tearDownNetwork: () => Promise<void>,
  ) {
    this.gone = vm.exited.then(() => undefined);
    void this.watchOom();
  }

  get id(): string {
    return this.vm.id;
  }

  get wantsBlockImages(): boolean {
    return this.vm.takesLayerDisks;
  }

  info(): Readonly<Record<string, unknown>> {
    return {
      vcpus: this.size.vcpus,
      memoryMiB: this.size.memoryMiB,
      // Restored from this template; absent for a cold boot.
      ...(this.vm.template === undefined ? {} : { template: this.vm.template }),
      bootTimings: this.vm.timings,
      qemuPid: this.vm.qemuPid,
      stateDir: this.vm.paths.root,
      consoleLog: this.vm.consoleLog,
    };
  }

  async shareMount(containerId: string, index: number, mount: SharedMount): Promise<string> {
    const dir = join(containerHostDir(this.vm.paths, containerId), "mounts", String(index));
    // A file is bind-mounted onto a file, a directory onto a directory.
    const st = await stat(mount.hostPath).catch((err: unknown) => {
      throw new VmpodError("InvalidArgument", `mount source ${mount.hostPath} does not exist`, { cause: err });
    });
    if (st.isDirectory()) await mkdir(dir, { recursive: true, mode: 0o700 });
    else {
      await mkdir(join(dir, ".."), { recursive: true, mode: 0o700 });
      await writeFile(dir, "", { mode: 0o600 });
    }
    await bindMount(mount.hostPath, dir, mount.readonly ? { readonly: true } : {});
    return `${GUEST_SHARED_DIR}/${containerId}/mounts/${index}`;
  }

  async createContainer(containerId: string, rootfs: RootfsLayers, spec: OciSpec, options: { readonly readonlyRootfs: boolean }): Promise<void> {
    await this.vm.createContainer(containerId, { kind: "layers", layers: rootfs }, spec, { readonlyRootfs: options.readonlyRootfs });
  }

  startContainer(containerId: string): Promise<void> {
    return this.vm.startContainer(containerId);
  }

  io(containerId: string, execId: string, options: { readonly stdin: boolean; readonly terminal: boolean }): ProcessIo {
    return this.vm.io(containerId, execId, options);
  }

  exec(containerId: string, execId: string, process: OciProcess, options: { readonly stdin: boolean }): Promise<ProcessIo> {
    return this.vm.exec(containerId, execId, process, options);
  }

  signal(containerId: string, execId: string, signal: number): Promise<void> {
    return this.vm.signal(containerId, execId, signal);
  }

  wait(containerId: string, execId: string, options: { readonly signal?: AbortSignal } = {}): Promise<number> {
    return this.vm.wait(containerId, execId, options);
  }

  async oomKilled(containerId: string): Promise<boolean> {
    if (this.oomKills.has(containerId)) return true;
    await sleep(OOM_EVENT_GRACE_MS);
    return this.oomKills.has(containerId);
  }

  update(containerId: string, resources: OciResources): Promise<void> {
    return this.vm.update(containerId, resources);
  }

  async usage(containerId: string): Promise<ContainerUsage> {
    return this.vm.stats(containerId);
  }

  async removeContainer(containerId: string, timeoutSec: number): Promise<void> {
    const failures: unknown[] = [];
    await this.vm.removeContainer(containerId, timeoutSec).catch((err: unknown) => failures.push(err));
    const mounts = join(containerHostDir(this.vm.paths, containerId), "mounts");
    await unmountTree(mounts).catch((err: unknown) => failures.push(err));
    await rm(containerHostDir(this.vm.paths, containerId), { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
    if (failures.length > 0) throw new VmpodError("Internal", `remove container ${containerId}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }

  async openPort(port: number): Promise<Duplex> {
    const connectionId = await this.vm.agentClient.openPort(port);
    return agentPortStream(this.vm.agentClient, connectionId);
  }

  async stop(): Promise<void> {
    this.oomWatch.abort();
    try {
      await this.vm.stop();
    } finally {
      // After the VM: its tap goes with QEMU, then CNI DEL and the netns.
      await this.tearDownNetwork();
    }
  }

  private async watchOom(): Promise<void> {
    const signal = this.oomWatch.signal;
    void this.vm.exited.then(() => this.oomWatch.abort());
    while (!signal.aborted) {
      try {
        const id = await this.vm.agentClient.nextOomEvent({ timeoutMs: null, signal });
        if (id) {
          this.oomKills.add(id);
          this.logger.info("container was killed for memory", { container: id });
        }
      } catch (err) {
        if (signal.aborted) return;
        this.logger.debug("oom events", { err: messageOf(err) });
        await sleep(1000, signal).catch(() => undefined);
      }
    }
  }
}

/** The network layer's guest NIC as the agent takes it. */
function interfaceOf(nic: GuestNic): InterfaceConfig {
  return { name: nic.name, mac: nic.mac, mtu: nic.mtu, addresses: nic.addresses.map((a) => ({ family: a.family, address: a.address, prefixLength: a.prefixLength })) };
}

function routeOf(r: GuestRoute): RouteConfig {
  return { family: r.family, destination: r.destination, device: r.device, ...(r.gateway === undefined ? {} : { gateway: r.gateway }), ...(r.scope === undefined ? {} : { scope: r.scope }) };
}

/** The pod's /etc files, in a directory of the shared dir no container id can name. */
const POD_FILES_DIR = ".pod";

/** Writes the pod's hostname, resolv.conf and hosts; returns them as guest paths. */
async function writePodFiles(dir: string, content: { hostname: string; resolvConf: readonly string[]; hosts: readonly string[] }): Promise<{ hostname: string; resolvConf: string; hosts: string }> {
  await mkdir(dir, { mode: 0o755 });
  await writeFile(join(dir, "hostname"), `${content.hostname}\n`, { mode: 0o644 });
  await writeFile(join(dir, "resolv.conf"), content.resolvConf.map((l) => `${l}\n`).join(""), { mode: 0o644 });
  await writeFile(join(dir, "hosts"), content.hosts.map((l) => `${l}\n`).join(""), { mode: 0o644 });
  return podFilePaths();
}

/** Where the guest sees the pod's /etc files. */
function podFilePaths(): { hostname: string; resolvConf: string; hosts: string } {
  const guest = `${GUEST_SHARED_DIR}/${POD_FILES_DIR}`;
  return { hostname: `${guest}/hostname`, resolvConf: `${guest}/resolv.conf`, hosts: `${guest}/hosts` };
}

/** resolv.conf lines from the pod's DNS config. */
export function dnsLines(dns: { readonly servers: readonly string[]; readonly searches: readonly string[]; readonly options: readonly string[] }): string[] {
  return [
    ...dns.servers.map((s) => `nameserver ${s}`),
    ...(dns.searches.length > 0 ? [`search ${dns.searches.join(" ")}`] : []),
    ...(dns.options.length > 0 ? [`options ${dns.options.join(" ")}`] : []),
  ];
}
