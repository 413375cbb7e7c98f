/**
 * A VmSpec from vmpod's configuration and one pod's request: the
 * configured binaries, guest assets and sizes, the run directory's standard
 * file names, and the agent on a virtio-serial port; with block layers
 * (`disable_block_device_use = false`), the controller their disks go on.
 */
import { invalidArgument } from "../common/errors.js";
import type { HypervisorConfig } from "../config/types.js";
import { BOOT_SHARE_ID, vmPaths, type Accel, type VirtioFsCache, type VmSpec } from "./spec.js";

/** The virtio-serial port the guest agent listens on. */
export const AGENT_PORT_NAME = "agent.channel.0";

export interface VmRequest {
  readonly id: string;
  /** The VM's own directory (sockets, console log); created by prepare. */
  readonly runDir: string;
  /** From `chooseAccel` (accel.ts). */
  readonly accel: Accel;
  /** From `hostTscKhz` (accel.ts); used on microvm under TCG. */
  readonly tscKhz?: number;
  readonly vcpus?: number;
  readonly memoryMiB?: number;
  /**
   * The guest image's kernel parameters (its console, root, init); the
   * configured `kernel_params` follow them.
   */
  readonly kernelParams?: readonly string[];
  /** A host directory shared into the guest at boot. */
  readonly share?: { readonly tag: string; readonly sourceDir: string };
  readonly virtioFsCache?: VirtioFsCache;
  readonly paused?: boolean;
  /** Keep guest memory shared so that a share can be added later (templates). */
  readonly sharedMemory?: boolean;
  /** q35: free PCIe root ports for shares added later. */
  readonly hotplugPorts?: number;
}

/** Kata's default: one thread serves virtiofsd's queue. */
const VIRTIOFSD_THREADS = 1;

export function vmSpecFromConfig(config: HypervisorConfig, request: VmRequest): VmSpec {
  const paths = vmPaths(request.runDir);
  const virtioFs = config.sharedFs === "virtio-fs";
  if (request.share && !virtioFs) throw invalidArgument(`a shared directory needs shared_fs = "virtio-fs", not "${config.sharedFs}"`);
  return {
    id: request.id,
    qemuPath: config.path,
    runDir: request.runDir,
    machine: config.machineType,
    accel: request.accel,
    vcpus: request.vcpus ?? config.defaultVcpus,
    memoryMiB: request.memoryMiB ?? config.defaultMemory,
    boot: {
      kernel: config.kernel,
      ...(config.initrd === "" ? {} : { initrd: config.initrd }),
      params: [...(request.kernelParams ?? []), ...config.kernelParams],
    },
    ...(config.image === "" ? {} : { rootImage: config.image }),
    agent: { kind: "virtio-serial", socketPath: paths.agentSocket, name: AGENT_PORT_NAME },
    ...(request.share ? { sharedFs: { ...request.share, socketPath: paths.virtiofsSocket(BOOT_SHARE_ID) } } : {}),
    ...(virtioFs
      ? { virtiofsd: { daemonPath: config.virtioFsDaemon, cache: request.virtioFsCache ?? "auto", threadPoolSize: VIRTIOFSD_THREADS } }
      : {}),
    qmpSocket: paths.qmpSocket,
    consoleLog: paths.consoleLog,
    ...(config.disableBlockDeviceUse ? {} : { blockHotplug: { driver: config.blockDeviceDriver } }),
    ...(request.sharedMemory === undefined ? {} : { sharedMemory: request.sharedMemory }),
    ...(request.hotplugPorts === undefined ? {} : { hotplugPorts: request.hotplugPorts }),
    ...(request.paused === undefined ? {} : { paused: request.paused }),
    ...(request.tscKhz === undefined ? {} : { tscKhz: request.tscKhz }),
  };
}
