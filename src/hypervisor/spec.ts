/**
 * VmSpec: everything needed to launch one VM, fully resolved (paths,
 * sizes, acceleration), so that the command-line builder is a pure function
 * of it. `vmSpecFromConfig` (spec-from-config.ts) builds one from vmpod's
 * configuration.
 */
import { isAbsolute, join, normalize } from "node:path";
import { invalidArgument } from "../common/errors.js";
import { isSafeId } from "../common/ids.js";
import type { BlockDeviceDriver, MachineType } from "../config/types.js";

/** The acceleration actually used; "auto" is resolved by accel.ts. */
export type Accel = "kvm" | "tcg";

/**
 * The channel the host's agent client uses to reach the guest agent. Only
 * virtio-serial today: no vhost-vsock on the hosts this runs on (DESIGN.md).
 */
export interface VirtioSerialChannel {
  readonly kind: "virtio-serial";
  /** Unix socket QEMU listens on; the agent client connects to it. */
  readonly socketPath: string;
  /** The port name the guest reads in /sys/class/virtio-ports/vportNpM/name. */
  readonly name: string;
}

export type AgentChannel = VirtioSerialChannel;

export type VirtioFsCache = "auto" | "always" | "none";

/** How virtiofsd runs, for the share given at boot and for those added later. */
export interface VirtiofsdSettings {
  /** The virtiofsd binary. */
  readonly daemonPath: string;
  readonly cache: VirtioFsCache;
  readonly threadPoolSize?: number;
}

/** A host directory shared into the guest with virtio-fs at boot. */
export interface SharedFsSpec {
  /** The mount tag the guest uses: `mount -t virtiofs TAG /mnt`. */
  readonly tag: string;
  readonly sourceDir: string;
  /** The vhost-user socket between virtiofsd and QEMU. */
  readonly socketPath: string;
}

/**
 * The controller that read-only disks (container image layers) are added to
 * while the VM runs. "virtio-scsi": one controller given at boot, disks
 * added as `scsi-hd` on its bus; SCSI hot-plug needs no PCI hot-plug, so it
 * works on microvm. "virtio-blk": one `virtio-blk-pci` per disk on a free
 * PCIe root port (q35 only, `hotplugPorts`).
 */
export interface BlockHotplugSpec {
  readonly driver: BlockDeviceDriver;
}

/**
 * A network card whose other end is a tap device the host opened (in the
 * pod's network namespace, joined to its CNI interface by TC redirection).
 * QEMU gets the tap as an inherited file descriptor, never by name.
 */
export interface NicSpec {
  /** QEMU's netdev id. */
  readonly id: string;
  /** The guest NIC's MAC address, "aa:bb:cc:dd:ee:ff" (the CNI interface's). */
  readonly mac: string;
  /**
   * The open tap, a descriptor of vmpod's process. The launcher passes the
   * NICs' descriptors in order as QEMU's 3, 4, ... (qemu-args.ts, passedFds).
   */
  readonly tapFd: number;
  /**
   * q35 only: only the tap backend is on the command line; the card is
   * added later with addDevice (a VM restored from a template, whose saved
   * state holds no card). The i-th such card goes on the i-th hot-plug port
   * from the last (`nicPort`).
   */
  readonly hotplug?: boolean;
}

export interface NetworkSpec {
  readonly nics: readonly NicSpec[];
}

/**
 * Guest RAM in a file (`memory-backend-file,share=on`) instead of a memfd:
 * a VM template's memory, or a restored pod's own copy of it. Its pages are
 * shared with the host, so virtio-fs works as with a memfd. Saving and
 * restoring such a VM leaves its RAM out of the state stream (the migration
 * capability `x-ignore-shared`): the file is the memory.
 */
export interface MemoryFileSpec {
  /**
   * The file QEMU maps (created when missing; a template's memory); removed
   * with the run dir when it is inside it. Unused with `copyOf`.
   */
  readonly path: string;
  /**
   * A file the restored VM's RAM is a copy of (a template's memory): prepare
   * copies it into a memfd, leaving holes where it holds zeros, which QEMU
   * maps instead of `path` (guest-ram.ts says why not a file).
   */
  readonly copyOf?: string;
}

export interface KernelBoot {
  readonly kernel: string;
  readonly initrd?: string;
  /** Joined with spaces into the kernel command line, in this order. */
  readonly params: readonly string[];
}

export interface VmSpec {
  /** Names the VM (`-name vmpod-ID`); a safe path component. */
  readonly id: string;
  /** The QEMU binary. */
  readonly qemuPath: string;
  /** Created by prepare, removed with everything in it by cleanup. */
  readonly runDir: string;
  readonly machine: MachineType;
  readonly accel: Accel;
  readonly vcpus: number;
  readonly memoryMiB: number;
  /** Direct kernel boot; absent, the firmware runs alone (tests, incoming migration). */
  readonly boot?: KernelBoot;
  /** The root image, attached read-only as the first virtio-blk disk. */
  readonly rootImage?: string;
  readonly agent?: AgentChannel;
  readonly sharedFs?: SharedFsSpec;
  /** Needed with `sharedFs` or for adding virtio-fs devices later. */
  readonly virtiofsd?: VirtiofsdSettings;
  /** QMP's unix socket. */
  readonly qmpSocket: string;
  /** The serial console's output, kept so that a failed boot can be read. */
  readonly consoleLog: string;
  /**
   * Back guest RAM with a shared memfd even with no share at boot, so that a
   * virtio-fs device can be added later. Implied by `sharedFs`.
   */
  readonly sharedMemory?: boolean;
  /** Guest RAM in a file rather than a memfd (templates); implies shared memory. */
  readonly memoryFile?: MemoryFileSpec;
  /** Disks added while the VM runs (image layers); absent, none can be. */
  readonly blockHotplug?: BlockHotplugSpec;
  /** q35 only: free PCIe root ports (hp0, hp1, ...) for hot-added devices. */
  readonly hotplugPorts?: number;
  /** Start with the vCPUs stopped (`-S`); QMP `cont` runs them. */
  readonly paused?: boolean;
  /**
   * Start waiting for a saved VM state (`-incoming defer`) instead of
   * running: `restoreState` loads it. The rest of the spec must describe
   * the same devices as the VM that was saved.
   */
  readonly incoming?: boolean;
  /**
   * microvm under TCG: the host's TSC frequency in kHz (accel.ts,
   * `hostTscKhz`). The guest's TSC runs at the host's rate under TCG, and
   * microvm has neither HPET nor ACPI PM timer to calibrate it against: given
   * `tsc_early_khz`, the 6.1 kernel boots reliably; without it, early boot
   * often hangs waiting for the first timer tick on a loaded host.
   */
  readonly tscKhz?: number;
  /** The pod's network cards. */
  readonly network?: NetworkSpec;
}

/** The file names vmpod uses inside a VM's run directory. */
export interface VmPaths {
  readonly qmpSocket: string;
  readonly consoleLog: string;
  readonly agentSocket: string;
  /** virtiofsd's socket for the share with this device id. */
  virtiofsSocket(deviceId: string): string;
}

export function vmPaths(runDir: string): VmPaths {
  return {
    qmpSocket: join(runDir, "qmp.sock"),
    consoleLog: join(runDir, "console.log"),
    agentSocket: join(runDir, "agent.sock"),
    virtiofsSocket: (deviceId) => join(runDir, `vfsd-${deviceId}.sock`),
  };
}

/** The device id of the share given at boot (chardev and device ids derive from it). */
export const BOOT_SHARE_ID = "fs0";

/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_SOCKET_PATH_BYTES = 107;
/** virtio-fs tags are at most 36 bytes. */
const MAX_TAG_BYTES = 36;
const MAX_VCPUS = 255;
const MIN_MEMORY_MIB = 64;
const MAX_HOTPLUG_PORTS = 32;
/** More than a pod has any use for; each is a descriptor QEMU inherits. */
const MAX_NICS = 8;

/** True when guest RAM must be shared with the host: a memfd (virtio-fs now or later) or a file. */
export function needsSharedMemory(spec: VmSpec): boolean {
  return spec.sharedFs !== undefined || spec.sharedMemory === true || spec.memoryFile !== undefined;
}

/** Checks a spec's shape and values (not the files it names); throws InvalidArgument. */
export function validateSpec(spec: VmSpec): void {
  const fail = (what: string) => {
    throw invalidArgument(`vm spec: ${what}`);
  };
  if (!isSafeId(spec.id)) fail(`id ${JSON.stringify(spec.id)} is not a safe name`);
  checkPath("qemuPath", spec.qemuPath, fail);
  checkPath("runDir", spec.runDir, fail);
  if (normalize(spec.runDir) === "/") fail("runDir must not be /");
  if (spec.machine !== "microvm" && spec.machine !== "q35") fail(`unknown machine type ${JSON.stringify(spec.machine)}`);
  if (spec.accel !== "kvm" && spec.accel !== "tcg") fail(`unknown acceleration ${JSON.stringify(spec.accel)}`);
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1 || spec.vcpus > MAX_VCPUS) fail(`vcpus must be an integer in 1..${MAX_VCPUS}, not ${spec.vcpus}`);
  if (!Number.isInteger(spec.memoryMiB) || spec.memoryMiB < MIN_MEMORY_MIB) {
    fail(`memoryMiB must be an integer of at least ${MIN_MEMORY_MIB}, not ${spec.memoryMiB}`);
  }
  if (spec.boot) {
    checkPath("kernel", spec.boot.kernel, fail);
    if (spec.boot.initrd !== undefined) checkPath("initrd", spec.boot.initrd, fail);
    for (const param of spec.boot.params) {
      if (param.trim() === "" || /[\0\n]/.test(param)) fail(`bad kernel parameter ${JSON.stringify(param)}`);
    }
  }
  if (spec.rootImage !== undefined) checkPath("rootImage", spec.rootImage, fail);
  checkSocket("qmpSocket", spec.qmpSocket, fail);
  checkPath("consoleLog", spec.consoleLog, fail);
  if (spec.agent) {
    checkSocket("agent socketPath", spec.agent.socketPath, fail);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(spec.agent.name)) fail(`bad agent port name ${JSON.stringify(spec.agent.name)}`);
  }
  if (spec.sharedFs) {
    checkVirtioFsTag(spec.sharedFs.tag, fail);
    checkSharedDir(spec.sharedFs.sourceDir, fail);
    checkSocket("virtiofsd socketPath", spec.sharedFs.socketPath, fail);
    if (!spec.virtiofsd) fail("sharedFs needs virtiofsd settings");
  }
  if (spec.virtiofsd) checkVirtiofsd(spec.virtiofsd, fail);
  if (spec.hotplugPorts !== undefined) {
    if (spec.machine !== "q35" && spec.hotplugPorts > 0) fail("hotplugPorts needs the q35 machine");
    if (!Number.isInteger(spec.hotplugPorts) || spec.hotplugPorts < 0 || spec.hotplugPorts > MAX_HOTPLUG_PORTS) {
      fail(`hotplugPorts must be an integer in 0..${MAX_HOTPLUG_PORTS}`);
    }
  }
  if (spec.blockHotplug) {
    const driver = spec.blockHotplug.driver;
    if (driver !== "virtio-scsi" && driver !== "virtio-blk") fail(`unknown block device driver ${JSON.stringify(driver)}`);
    if (driver === "virtio-blk" && spec.machine !== "q35") fail("block devices on virtio-blk need the q35 machine (microvm has no PCI hot-plug): use virtio-scsi");
    if (driver === "virtio-blk" && (spec.hotplugPorts ?? 0) === 0) fail("block devices on virtio-blk need hotplugPorts");
  }
  if (spec.memoryFile) {
    checkPath("memory file", spec.memoryFile.path, fail);
    if (spec.memoryFile.copyOf !== undefined) {
      checkPath("memory file's source", spec.memoryFile.copyOf, fail);
      if (normalize(spec.memoryFile.copyOf) === normalize(spec.memoryFile.path)) fail("the memory file is its own source");
    }
  }
  if (spec.tscKhz !== undefined && (!Number.isInteger(spec.tscKhz) || spec.tscKhz <= 0)) fail(`tscKhz must be a positive integer`);
  if (spec.network) checkNetwork(spec, spec.network, fail);
}

function checkNetwork(spec: VmSpec, network: NetworkSpec, fail: (what: string) => never): void {
  if (network.nics.length > MAX_NICS) fail(`at most ${MAX_NICS} network cards, not ${network.nics.length}`);
  const ids = new Set<string>();
  const macs = new Set<string>();
  const fds = new Set<number>();
  for (const nic of network.nics) {
    // QEMU ids: a letter, then letters, digits, '-', '.', '_'.
    if (!/^[A-Za-z][A-Za-z0-9._-]{0,31}$/.test(nic.id)) fail(`bad network card id ${JSON.stringify(nic.id)}`);
    if (ids.has(nic.id)) fail(`network card id ${nic.id} is used twice`);
    ids.add(nic.id);
    if (!isUnicastMac(nic.mac)) fail(`network card ${nic.id}: ${JSON.stringify(nic.mac)} is not a unicast MAC address aa:bb:cc:dd:ee:ff`);
    const mac = nic.mac.toLowerCase();
    if (macs.has(mac)) fail(`network card ${nic.id}: MAC address ${mac} is used twice`);
    macs.add(mac);
    if (!Number.isInteger(nic.tapFd) || nic.tapFd < 0) fail(`network card ${nic.id}: bad tap descriptor ${nic.tapFd}`);
    if (fds.has(nic.tapFd)) fail(`network card ${nic.id}: tap descriptor ${nic.tapFd} is used twice`);
    fds.add(nic.tapFd);
  }
  const added = network.nics.filter((nic) => nic.hotplug).length;
  if (added > 0 && (spec.machine !== "q35" || added > (spec.hotplugPorts ?? 0))) fail(`${added} network cards added later need q35 and as many hot-plug ports`);
}

/** "aa:bb:cc:dd:ee:ff" (either case), neither multicast nor all zeros. */
function isUnicastMac(mac: string): boolean {
  if (!/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(mac)) return false;
  const first = Number.parseInt(mac.slice(0, 2), 16);
  return (first & 1) === 0 && !/^(00:){5}00$/.test(mac);
}

/** Checks a virtio-fs tag; throws InvalidArgument. */
export function validateVirtioFsTag(tag: string): void {
  checkVirtioFsTag(tag, (what) => {
    throw invalidArgument(what);
  });
}

/** Checks a directory to share; throws InvalidArgument. */
export function validateSharedDir(path: string): void {
  checkSharedDir(path, (what) => {
    throw invalidArgument(what);
  });
}

function checkVirtioFsTag(tag: string, fail: (what: string) => never): void {
  const bytes = Buffer.byteLength(tag);
  if (bytes === 0 || bytes > MAX_TAG_BYTES || !/^[A-Za-z0-9._-]+$/.test(tag)) {
    fail(`virtio-fs tag ${JSON.stringify(tag)} must be 1..${MAX_TAG_BYTES} of [A-Za-z0-9._-]`);
  }
}

function checkSharedDir(path: string, fail: (what: string) => never): void {
  checkPath("shared directory", path, fail);
  // virtiofsd's `-o source=` is split on commas.
  if (/[,\\]/.test(path)) fail(`shared directory ${path} contains a comma or backslash`);
}

function checkVirtiofsd(settings: VirtiofsdSettings, fail: (what: string) => never): void {
  checkPath("virtiofsd path", settings.daemonPath, fail);
  if (settings.cache !== "auto" && settings.cache !== "always" && settings.cache !== "none") {
    fail(`unknown virtio-fs cache mode ${JSON.stringify(settings.cache)}`);
  }
  if (settings.threadPoolSize !== undefined && (!Number.isInteger(settings.threadPoolSize) || settings.threadPoolSize < 0)) {
    fail("virtiofsd threadPoolSize must be a non-negative integer");
  }
}

function checkPath(what: string, path: string, fail: (what: string) => never): void {
  if (path === "" || !isAbsolute(path)) fail(`${what} must be an absolute path, not ${JSON.stringify(path)}`);
  if (path.includes("\0")) fail(`${what} contains a NUL byte`);
}

/** Checks a unix socket path, whose length the kernel bounds; throws InvalidArgument. */
export function validateSocketPath(what: string, path: string): void {
  checkSocket(what, path, (message) => {
    throw invalidArgument(message);
  });
}

function checkSocket(what: string, path: string, fail: (what: string) => never): void {
  checkPath(what, path, fail);
  const bytes = Buffer.byteLength(path);
  if (bytes > MAX_SOCKET_PATH_BYTES) fail(`${what} ${path} is ${bytes} bytes, more than a unix socket allows (${MAX_SOCKET_PATH_BYTES})`);
}
