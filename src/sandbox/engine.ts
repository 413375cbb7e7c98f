/**
 * Boots pod VMs from the configuration: what is fixed for the life of the
 * daemon (acceleration, the guest's kernel parameters, the host's TSC
 * frequency) is decided once and handed in; each boot gets a fresh
 * Hypervisor from the factory. Each VM booted or taken over is told to the
 * observer (metrics, the debug copy of its console).
 */
import { rm } from "node:fs/promises";
import type { Logger } from "../common/log.js";
import { unmountTree } from "../common/mount.js";
import { killProcessesMentioning } from "../common/processes.js";
import type { Config } from "../config/types.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { Accel, VmSpec } from "../hypervisor/spec.js";
import { vmSpecFromConfig } from "../hypervisor/spec-from-config.js";
import { sandboxPaths, SHARED_FS_TAG, type SandboxPaths } from "./layout.js";
import { quietVmObserver, type VmObserver } from "./observer.js";
import { PodVm } from "./pod-vm.js";

export interface HostFacts {
  readonly accel: Accel;
  /** Under TCG, the host's TSC frequency for the guest kernel (see accel.ts). */
  readonly tscKhz?: number;
  /** The guest image's own kernel parameters; the configured ones follow. */
  readonly guestKernelParams: readonly string[];
}

export interface BootRequest {
  readonly id: string;
  readonly hostname: string;
  readonly dns?: readonly string[];
  readonly vcpus?: number;
  readonly memoryMiB?: number;
  /** Extra kernel parameters for this VM only (the benchmark floor); never pod data. */
  readonly extraKernelParams?: readonly string[];
  /**
   * The pod's network: the open tap QEMU gets (the caller still closes its
   * own descriptor), and the guest's interface (with the CNI interface's
   * MAC) and routes, which the agent sets up.
   */
  readonly network?: { readonly tapFd: number; readonly nic: InterfaceConfig; readonly routes: readonly RouteConfig[] };
  readonly signal?: AbortSignal;
}

export class VmEngine {
  constructor(
    private readonly config: Config,
    private readonly host: HostFacts,
    private readonly newHypervisor: () => Hypervisor,
    private readonly logger: Logger,
    private readonly observer: VmObserver = quietVmObserver,
  ) {}

  /** The VM a boot of `request` launches, and where its files go. */
  vmFor(request: Omit<BootRequest, "hostname" | "dns" | "signal">): { paths: SandboxPaths; spec: VmSpec } {
    const network = request.network;
    const paths = sandboxPaths(this.config.runtime.stateRoot, request.id);
    const spec = vmSpecFromConfig(this.config.hypervisor, {
      id: request.id,
      runDir: paths.vmDir,
      accel: this.host.accel,
      ...(this.host.tscKhz === undefined ? {} : { tscKhz: this.host.tscKhz }),
      ...(request.vcpus === undefined ? {} : { vcpus: request.vcpus }),
      ...(request.memoryMiB === undefined ? {} : { memoryMiB: request.memoryMiB }),
      kernelParams: [...this.host.guestKernelParams, ...(request.extraKernelParams ?? [])],
      ...(this.config.hypervisor.sharedFs === "virtio-fs" ? { share: { tag: SHARED_FS_TAG, sourceDir: paths.sharedDir } } : {}),
    });
    return { paths, spec: network ? { ...spec, network: { nics: [{ id: "net0", mac: network.nic.mac, tapFd: network.tapFd }] } } : spec };
  }

  /**
   * Removes what a pod VM left when the daemon died under it: its QEMU and
   * virtiofsd (found by the run directory on their command lines), mounts
   * and state directory.
   */
  async cleanupLeftovers(id: string): Promise<void> {
    const paths = sandboxPaths(this.config.runtime.stateRoot, id);
    const killed = await killProcessesMentioning(paths.vmDir);
    if (killed.length > 0) this.logger.warn("killed processes left by a pod vm", { pod: id, pids: killed });
    await unmountTree(paths.root);
    await rm(paths.root, { recursive: true, force: true });
  }

  /**
   * Takes over the pod VM `id` that an earlier vmpod started. Throws when it
   * cannot (the VM is gone, its record unreadable); what is left of it is
   * then the caller's to clean up (cleanupLeftovers).
   */
  async reattach(id: string, signal?: AbortSignal): Promise<PodVm> {
    const vm = await PodVm.reattach({
      id,
      paths: sandboxPaths(this.config.runtime.stateRoot, id),
      hypervisor: this.newHypervisor(),
      agentDialTimeoutMs: this.config.agent.dialTimeoutMs,
      agentCallTimeoutMs: this.config.agent.callTimeoutMs,
      logger: this.logger.child({ pod: id }),
      ...(signal ? { signal } : {}),
    });
    this.observer.reattached(vm);
    return vm;
  }

  async boot(request: BootRequest): Promise<PodVm> {
    const { paths, spec } = this.vmFor(request);
    const vm = await PodVm.boot({
      id: request.id,
      paths,
      spec,
      hypervisor: this.newHypervisor(),
      hostname: request.hostname,
      ...(request.dns ? { dns: request.dns } : {}),
      ...(request.network ? { network: { nic: request.network.nic, routes: request.network.routes } } : {}),
      agentDialTimeoutMs: this.config.agent.dialTimeoutMs,
      agentCallTimeoutMs: this.config.agent.callTimeoutMs,
      logger: this.logger.child({ pod: request.id }),
      ...(request.signal ? { signal: request.signal } : {}),
    });
    this.observer.booted(vm, vm.timings);
    return vm;
  }
}
