/**
 * Boots pod VMs from the configuration: what is fixed for the life of the
 * daemon (acceleration, the guest's kernel parameters, the host's TSC
 * frequency) is decided once and handed in; each boot gets a fresh
 * Hypervisor from the factory. Each VM booted or taken over is told to the
 * observer (metrics, the debug copy of its console).
 */
import { rm } from "node:fs/promises";
import { join } from "node:path";
import { kindOf, messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { unmountTree } from "../common/mount.js";
import { killProcessesMentioning } from "../common/processes.js";
import type { Config } from "../config/types.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { Accel, VmSpec } from "../hypervisor/spec.js";
import { vmSpecFromConfig, type VmRequest } from "../hypervisor/spec-from-config.js";
import { sandboxPaths, SHARED_FS_TAG, type SandboxPaths } from "./layout.js";
import { quietVmObserver, type VmObserver } from "./observer.js";
import { PodVm } from "./pod-vm.js";
import { TemplateStore } from "./template-store.js";

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

/** Free PCIe root ports in a template VM: the pod's share, and its network card. */
const TEMPLATE_HOTPLUG_PORTS = 2;
/** A restored VM's copy of its template's memory, in its run dir (removed with it). */
const TEMPLATE_MEMORY_FILE = "memory";

export class VmEngine {
  /** The VM templates, when `[factory] enable_template` is on and the configuration allows them. */
  readonly templates: TemplateStore | undefined;

  constructor(
    private readonly config: Config,
    private readonly host: HostFacts,
    private readonly newHypervisor: () => Hypervisor,
    private readonly logger: Logger,
    private readonly observer: VmObserver = quietVmObserver,
  ) {
    const why = templatesUnusable(config);
    if (config.factory.enableTemplate && why) logger.warn("vm templates are enabled but not used", { reason: why });
    this.templates =
      config.factory.enableTemplate && !why
        ? new TemplateStore({
            dir: config.factory.templatePath,
            newHypervisor,
            agentDialTimeoutMs: config.agent.dialTimeoutMs,
            agentCallTimeoutMs: config.agent.callTimeoutMs,
            logger: logger.child({ component: "templates" }),
          })
        : undefined;
  }

  /**
   * The template-shaped VM for `request`: its vCPUs, memory and kernel
   * parameters, guest RAM in a file of its run dir and free hot-plug
   * ports, no share and no network card. Booting, as the template is built; restoring adds
   * `incoming` and `paused`.
   */
  templateVmFor(request: Omit<BootRequest, "hostname" | "dns" | "signal" | "network">): { paths: SandboxPaths; spec: VmSpec } {
    const { paths, spec } = this.specFor(request, () => ({ sharedMemory: true, hotplugPorts: TEMPLATE_HOTPLUG_PORTS }));
    // Guest RAM in a file: the template's is saved as it is, and a restored pod maps its own sparse copy.
    return { paths, spec: { ...spec, memoryFile: { path: join(paths.vmDir, TEMPLATE_MEMORY_FILE) } } };
  }

  /** The VM a boot of `request` launches, and where its files go. */
  vmFor(request: Omit<BootRequest, "hostname" | "dns" | "signal">): { paths: SandboxPaths; spec: VmSpec } {
    const network = request.network;
    const { paths, spec } = this.specFor(request, (p) => (this.config.hypervisor.sharedFs === "virtio-fs" ? { share: { tag: SHARED_FS_TAG, sourceDir: p.sharedDir } } : {}));
    return { paths, spec: network ? { ...spec, network: { nics: [{ id: "net0", mac: network.nic.mac, tapFd: network.tapFd }] } } : spec };
  }

  /** The configured VM sized for `request`, with what the caller adds for its kind of VM. */
  private specFor(
    request: Pick<BootRequest, "id" | "vcpus" | "memoryMiB" | "extraKernelParams">,
    extra: (paths: SandboxPaths) => Partial<VmRequest>,
  ): { paths: SandboxPaths; spec: VmSpec } {
    const paths = sandboxPaths(this.config.runtime.stateRoot, request.id);
    const spec = vmSpecFromConfig(this.config.hypervisor, {
      id: request.id,
      runDir: paths.vmDir,
      accel: this.host.accel,
      ...(this.host.tscKhz === undefined ? {} : { tscKhz: this.host.tscKhz }),
      ...(request.vcpus === undefined ? {} : { vcpus: request.vcpus }),
      ...(request.memoryMiB === undefined ? {} : { memoryMiB: request.memoryMiB }),
      kernelParams: [...this.host.guestKernelParams, ...(request.extraKernelParams ?? [])],
      ...extra(paths),
    });
    return { paths, spec };
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

  /**
   * Builds the template of the configured default VM shape ahead of the
   * first pod, when templates are in use: false when there is none to use
   * (templates off, or the build failed, logged by the store). Pods of other
   * sizes get theirs when first asked for.
   */
  async warmUp(signal?: AbortSignal): Promise<boolean> {
    if (!this.templates) return false;
    const { spec } = this.templateVmFor({ id: "warm-up" });
    return (await this.templates.ensure(spec, signal)) !== undefined;
  }

  async boot(request: BootRequest): Promise<PodVm> {
    if (this.templates) {
      const vm = await this.restore(this.templates, request);
      if (vm) return vm;
    }
    return this.coldBoot(request);
  }

  /** The pod's VM restored from its template; undefined (logged) when there is none or the restore failed. */
  private async restore(templates: TemplateStore, request: BootRequest): Promise<PodVm | undefined> {
    const { paths, spec } = this.templateVmFor(request);
    const template = await templates.get(spec, request.signal);
    if (!template) return undefined;
    try {
      const network = request.network;
      const vm = await PodVm.restore({
        id: request.id,
        paths,
        // The tap's backend on the command line; the card is added once the VM runs.
        spec: {
          ...spec,
          incoming: true,
          paused: true,
          ...(spec.memoryFile ? { memoryFile: { ...spec.memoryFile, copyOf: template.memoryFile } } : {}),
          ...(network ? { network: { nics: [{ id: "net0", mac: network.nic.mac, tapFd: network.tapFd, hotplug: true }] } } : {}),
        },
        hypervisor: this.newHypervisor(),
        stateFile: template.stateFile,
        template: template.key,
        hostname: request.hostname,
        ...(request.dns ? { dns: request.dns } : {}),
        ...(network ? { network: { nic: network.nic, routes: network.routes } } : {}),
        agentDialTimeoutMs: this.config.agent.dialTimeoutMs,
        agentCallTimeoutMs: this.config.agent.callTimeoutMs,
        logger: this.logger.child({ pod: request.id }),
        ...(request.signal ? { signal: request.signal } : {}),
      });
      this.observer.booted(vm, vm.timings);
      return vm;
    } catch (err) {
      if (request.signal?.aborted) throw err;
      // QEMU refusing the state (it exits) condemns the template; anything else may be this pod's bad luck.
      const broken = kindOf(err) === "Unavailable";
      this.logger.warn("restore from vm template failed, booting cold", { pod: request.id, template: template.key, dropped: broken, err: messageOf(err) });
      await templates.discard(template, broken);
      return undefined;
    }
  }

  private async coldBoot(request: BootRequest): Promise<PodVm> {
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

/** Why the configuration cannot use VM templates, or undefined when it can. */
export function templatesUnusable(config: Config): string | undefined {
  if (config.hypervisor.machineType !== "q35") return `machine_type = "${config.hypervisor.machineType}": restored VMs get their share by PCI hot-plug, which needs q35`;
  if (config.hypervisor.sharedFs !== "virtio-fs") return `shared_fs = "${config.hypervisor.sharedFs}": restored VMs reach containers' files over virtio-fs`;
  if (!config.hypervisor.disableBlockDeviceUse) return "disable_block_device_use = false: image layers as disks are not tried with restored VMs yet";
  return undefined;
}
