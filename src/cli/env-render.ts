/**
 * `vmpod env`'s output: the collected facts as a TOML document, one table a
 * subject (runtime, hypervisor, kernel, initrd, image, guest_build, agent,
 * network, image_store, metrics, factory, host), in the manner of Kata's kata-env.
 * Facts that are unknown are left out (TOML has no null).
 */
import { stringify } from "smol-toml";
import type { AssetFacts, EnvFacts } from "./env.js";
import type { FactoryFacts } from "./factory.js";

/** Bumped when a key of the output changes meaning or goes away. */
export const ENV_FORMAT_VERSION = 1;

export function renderEnv(facts: EnvFacts): string {
  const { runtime, hypervisor: hv, network, host } = facts;
  const doc = {
    meta: { format_version: ENV_FORMAT_VERSION },
    runtime: {
      version: facts.vmpodVersion,
      config_path: facts.config.path,
      config_origin: facts.config.origin,
      config_warnings: [...facts.config.warnings],
      state_root: runtime.stateRoot,
      log_level: runtime.logLevel,
      enable_debug: runtime.debug,
      default_handler: runtime.defaultHandler,
      cri_socket: runtime.criSocket,
      stream_address: runtime.streamAddress,
      handlers: Object.fromEntries(
        Object.entries(runtime.handlers).map(([name, h]) => [name, h.type === "oci" ? { type: h.type, runtime_path: h.runtimePath, present: h.present } : { type: h.type }]),
      ),
    },
    hypervisor: {
      path: hv.path,
      version: hv.version,
      machine_type: hv.machineType,
      accel_requested: hv.accelRequested,
      accel: hv.accel,
      accel_reason: hv.accelReason,
      default_vcpus: hv.defaultVcpus,
      default_memory: hv.defaultMemoryMiB,
      base_kernel_params: [...hv.baseKernelParams],
      kernel_params: [...hv.kernelParams],
      shared_fs: hv.sharedFs,
      virtio_fs_daemon: hv.virtioFsDaemon,
      virtio_fs_daemon_version: hv.virtioFsDaemonVersion,
      block_device_driver: hv.blockDeviceDriver,
      disable_block_device_use: hv.disableBlockDeviceUse,
      kvm: { device_present: hv.kvm.present, device_usable: hv.kvm.usable, kvm_pvm: hv.kvm.pvm },
    },
    kernel: asset(facts.kernel),
    initrd: asset(facts.initrd),
    image: asset(facts.image),
    guest_build: facts.guestBuild && {
      hash: facts.guestBuild.hash,
      kernel_version: facts.guestBuild.kernelVersion,
      node_version: facts.guestBuild.nodeVersion,
      crun_version: facts.guestBuild.crunVersion,
      built_at: facts.guestBuild.builtAt,
    },
    agent: {
      version: facts.agent.version,
      transport: facts.agent.transport,
      dial_timeout: facts.agent.dialTimeoutSeconds,
      call_timeout: facts.agent.callTimeoutSeconds,
    },
    network: {
      conf_dir: network.confDir,
      conflist: network.cni.conflist,
      network_name: network.cni.networkName,
      conflist_error: network.cni.error,
      plugins: [...network.cni.plugins],
      missing_plugins: [...network.cni.missingPlugins],
      plugin_binaries: network.cni.pluginBinaries,
      bin_dirs: [...network.binDirs],
      cache_dir: network.cacheDir,
      internetworking_model: network.interNetworkingModel,
    },
    image_store: { root: facts.imageStore.root, platform: facts.imageStore.platform, sandbox_image: facts.imageStore.sandboxImage },
    metrics: { enable: facts.metrics.enable, address: facts.metrics.address },
    factory: factory(facts.factory),
    host: {
      kernel: host.kernel,
      architecture: host.architecture,
      cpu_model: host.cpuModel,
      cpus: host.cpus,
      memory_mib: Math.floor(host.memoryBytes / (1024 * 1024)),
      root: host.isRoot,
      cgroup_version: host.cgroups.version,
      cgroup_controllers: [...host.cgroups.controllers],
    },
  };
  return `# vmpod env: what vmpod would use on this host\n\n${stringify(doc)}\n`;
}

function factory(f: FactoryFacts): Record<string, unknown> {
  return {
    enable_template: f.enableTemplate,
    in_use: f.inUse,
    reason: f.reason,
    template_path: f.templatePath,
    vm_cache_number: f.vmCacheNumber,
    current_key: f.currentKey,
    current_key_error: f.currentKeyError,
    templates: f.templates,
    current_built: f.currentBuilt,
  };
}

function asset(a: AssetFacts): Record<string, unknown> {
  return { path: a.path, present: a.present, size: a.sizeBytes, sha256: a.sha256 };
}
