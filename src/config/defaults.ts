/** Every key's default, and the limits of the values that have some. */
import type { Config } from "./types.js";

/**
 * The least memory (MiB) a pod's VM is given. Measured with the guest image
 * under TCG (a pod VM booted, a container started, an exec run): at 128 MiB
 * all of it takes about 10 s; at 96 MiB it still works but took 39 s, the
 * agent (node) starved for memory; at 80 MiB the guest kills the agent for
 * lack of memory; at 64 MiB the kernel panics ("deadlocked on memory").
 */
export const MIN_GUEST_MEMORY_MIB = 128;

/** The most vCPUs a VM spec accepts. */
export const MAX_VCPUS = 255;

/**
 * Every key's default. `assetDir` is where the guest image build puts the
 * kernel, initramfs and root image (guest/out/current in a source tree).
 */
export function defaultConfig(assetDir: string): Config {
  return {
    hypervisor: {
      path: "/usr/bin/qemu-system-x86_64",
      kernel: `${assetDir}/vmlinux`,
      initrd: `${assetDir}/initrd.img`,
      image: `${assetDir}/root.erofs`,
      // q35: pods restore from VM templates, which get their share and network
      // card by PCI hot-plug (microvm has none); cold boots are the fallback.
      machineType: "q35",
      kernelParams: [],
      defaultVcpus: 1,
      defaultMemory: 256,
      accel: "auto",
      sharedFs: "virtio-fs",
      virtioFsDaemon: "/usr/lib/qemu/virtiofsd",
      blockDeviceDriver: "virtio-scsi",
      disableBlockDeviceUse: true,
    },
    agent: {
      dialTimeoutMs: 90_000,
      callTimeoutMs: 30_000,
    },
    runtime: {
      stateRoot: "/run/vmpod",
      logLevel: "info",
      enableDebug: false,
      defaultHandler: "vmpod",
      handlers: { vmpod: { type: "vm" }, runc: { type: "oci", runtimePath: "/usr/bin/runc" } },
    },
    cri: {
      socket: "/run/vmpod/vmpod.sock",
      streamAddress: "127.0.0.1:0",
      streamTokenTtlMs: 60_000,
    },
    image: {
      root: "/var/lib/vmpod/image",
      platform: "linux/amd64",
      maxConcurrentDownloads: 3,
      sandboxImage: "registry.k8s.io/pause:3.10",
      registries: {},
    },
    network: {
      confDir: "/etc/cni/net.d",
      binDirs: ["/opt/cni/bin", "/usr/lib/cni"],
      cacheDir: "/var/lib/vmpod/cni",
      pluginTimeoutMs: 30_000,
      interNetworkingModel: "tcfilter",
    },
    metrics: {
      enable: true,
      address: "127.0.0.1:8090",
    },
    // Templates are derived state, rebuilt when their key changes; on disk
    // beside the image store rather than in /run (tmpfs), where each saved
    // VM (about half its memory size) would take host RAM.
    factory: {
      enableTemplate: true,
      templatePath: "/var/lib/vmpod/templates",
      vmCacheNumber: 0,
    },
  };
}
