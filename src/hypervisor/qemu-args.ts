/**
 * The QEMU command line, a pure function of a VmSpec (golden tests in
 * test/unit/hypervisor/qemu-args.test.ts). The binary itself is not part of
 * the result.
 *
 * Choices, for x86_64 with QEMU 7.2 and the Debian 6.1 cloud kernel:
 * - microvm: no option ROMs (qboot loads the kernel itself), an ISA serial
 *   port for the console, the RTC on (without it the kernel finds no clock to
 *   calibrate against under TCG and hangs), the PIT and PIC left on (the
 *   kernel's early timer needs them), and modern virtio-mmio
 *   (`force-legacy=false`), which virtiofsd requires.
 * - q35: no vmport and no SATA controller; PCIe root ports for hot-plug.
 * - Disks added later (image layers) on virtio-scsi: the controller is given
 *   at boot, last, so that the devices before it keep their places.
 * - KVM uses the host CPU model. TCG runs one host thread per vCPU and
 *   emulates `max`, every feature TCG has: the guest's node then starts
 *   about 1 s sooner than on the default qemu64 model (measured with the
 *   guest image's agent), which outweighs the kernel's longer boot.
 * - Network cards last, after the SCSI controller, for the same reason: a
 *   `tap` netdev on a descriptor QEMU inherits (no vhost: the hosts have no
 *   /dev/vhost-net), the card carrying the pod's MAC address; on q35 without
 *   an option ROM (the guest boots its kernel directly, never from the NIC).
 * - Guest RAM shared with the host (virtio-fs) is a memfd, or a file when
 *   the spec names one (templates: the file is the saved VM's memory).
 * - The serial console goes to a file; QMP to a unix socket; no display, no
 *   default devices, no user config, and QEMU exits instead of rebooting.
 *   The process is not daemonized: the supervisor owns it.
 */
import { BOOT_SHARE_ID, needsSharedMemory, type VmSpec } from "./spec.js";

/** Ids used on the command line and in QMP. */
export const QEMU_IDS = {
  qmpChardev: "qmp",
  consoleChardev: "console",
  agentChardev: "agent",
  serialBus: "vserial",
  rootDrive: "rootfs",
  memory: "mem",
  scsiController: "scsi0",
} as const;

/** The descriptor number of the first tap in QEMU (after stdin, stdout, stderr). */
export const FIRST_TAP_FD = 3;

/**
 * The tap descriptors to hand QEMU, in order: the launcher makes the i-th
 * its descriptor FIRST_TAP_FD + i (Node's spawn: `stdio: [in, out, err,
 * ...passedFds(spec)]`), which is what the command line names.
 */
export function passedFds(spec: VmSpec): number[] {
  return (spec.network?.nics ?? []).map((nic) => nic.tapFd);
}

/** The bus of the SCSI controller that hot-added disks go on. */
export const SCSI_BUS = `${QEMU_IDS.scsiController}.0`;

/** The virtio-fs queue size Kata and virtiofsd use. */
export const VIRTIO_FS_QUEUE_SIZE = 1024;

/** The id of hot-plug root port `n` on q35. */
export function hotplugPortId(n: number): string {
  return `hp${n}`;
}

/**
 * The hot-plug ports of the network cards added later (`NicSpec.hotplug`),
 * by netdev id: the i-th takes the i-th port from the last, so that shares
 * take the first ones.
 */
export function nicPorts(spec: VmSpec): Map<string, string> {
  const ports = new Map<string, string>();
  const last = (spec.hotplugPorts ?? 0) - 1;
  for (const nic of spec.network?.nics ?? []) {
    if (nic.hotplug) ports.set(nic.id, hotplugPortId(last - ports.size));
  }
  return ports;
}

/** The device id of a network card added later, from its netdev id. */
export function nicDeviceId(netdevId: string): string {
  return `${netdevId}-card`;
}

/** The chardev id behind a virtio-fs device. */
export function virtioFsChardevId(deviceId: string): string {
  return `chr-${deviceId}`;
}

/** Escapes a value inside a QEMU `key=value,...` option string (commas are doubled). */
export function optValue(value: string | number): string {
  return String(value).replaceAll(",", ",,");
}

/** Joins a driver or type name with `key=value` properties into one option string. */
export function opts(head: string, props: Readonly<Record<string, string | number | undefined>>): string {
  const parts = [head];
  for (const [key, value] of Object.entries(props)) {
    if (value !== undefined) parts.push(`${key}=${optValue(value)}`);
  }
  return parts.join(",");
}

export function buildQemuArgs(spec: VmSpec): string[] {
  const microvm = spec.machine === "microvm";
  const shared = needsSharedMemory(spec);
  const args: string[] = [];
  const add = (...more: string[]) => args.push(...more);

  add("-name", `vmpod-${spec.id}`);
  add("-machine", machineOption(spec, shared));
  if (spec.accel === "kvm") add("-accel", "kvm", "-cpu", "host");
  else add("-accel", "tcg,thread=multi", "-cpu", "max");
  add("-smp", String(spec.vcpus));
  add("-m", `${spec.memoryMiB}M`);
  add("-nodefaults", "-no-user-config", "-nographic", "-no-reboot");
  if (spec.paused) add("-S");
  if (spec.incoming) add("-incoming", "defer");
  if (spec.memoryFile) {
    add("-object", opts("memory-backend-file", { id: QEMU_IDS.memory, size: `${spec.memoryMiB}M`, "mem-path": spec.memoryFile.path, share: "on" }));
  } else if (shared) {
    add("-object", opts("memory-backend-memfd", { id: QEMU_IDS.memory, size: `${spec.memoryMiB}M`, share: "on" }));
  }
  if (microvm) add("-global", "virtio-mmio.force-legacy=false");

  add("-chardev", opts("socket", { id: QEMU_IDS.qmpChardev, path: spec.qmpSocket, server: "on", wait: "off" }));
  add("-mon", opts(`chardev=${QEMU_IDS.qmpChardev}`, { mode: "control" }));
  add("-chardev", opts("file", { id: QEMU_IDS.consoleChardev, path: spec.consoleLog }));
  add("-serial", `chardev:${QEMU_IDS.consoleChardev}`);

  if (spec.boot) {
    add("-kernel", spec.boot.kernel);
    if (spec.boot.initrd !== undefined) add("-initrd", spec.boot.initrd);
    const params = [...spec.boot.params];
    if (microvm && spec.accel === "tcg" && spec.tscKhz !== undefined) params.push(`tsc_early_khz=${spec.tscKhz}`);
    if (params.length > 0) add("-append", params.join(" "));
  }

  for (let n = 0; n < (spec.hotplugPorts ?? 0); n++) {
    add("-device", opts("pcie-root-port", { id: hotplugPortId(n), bus: "pcie.0", chassis: n + 1 }));
  }

  if (spec.rootImage !== undefined) {
    add(
      "-blockdev",
      opts("driver=raw", { "node-name": QEMU_IDS.rootDrive, "read-only": "on", "file.driver": "file", "file.filename": spec.rootImage }),
    );
    add("-device", opts(microvm ? "virtio-blk-device" : "virtio-blk-pci", { drive: QEMU_IDS.rootDrive, id: `${QEMU_IDS.rootDrive}-blk` }));
  }

  if (spec.agent) {
    add("-device", opts(microvm ? "virtio-serial-device" : "virtio-serial-pci", { id: QEMU_IDS.serialBus }));
    add("-chardev", opts("socket", { id: QEMU_IDS.agentChardev, path: spec.agent.socketPath, server: "on", wait: "off" }));
    add(
      "-device",
      opts("virtserialport", { bus: `${QEMU_IDS.serialBus}.0`, chardev: QEMU_IDS.agentChardev, name: spec.agent.name }),
    );
  }

  if (spec.sharedFs) {
    const chardev = virtioFsChardevId(BOOT_SHARE_ID);
    add("-chardev", opts("socket", { id: chardev, path: spec.sharedFs.socketPath }));
    add(
      "-device",
      opts(microvm ? "vhost-user-fs-device" : "vhost-user-fs-pci", {
        id: BOOT_SHARE_ID,
        chardev,
        tag: spec.sharedFs.tag,
        "queue-size": VIRTIO_FS_QUEUE_SIZE,
      }),
    );
  }

  if (spec.blockHotplug?.driver === "virtio-scsi") {
    add("-device", opts(microvm ? "virtio-scsi-device" : "virtio-scsi-pci", { id: QEMU_IDS.scsiController }));
  }

  (spec.network?.nics ?? []).forEach((nic, i) => {
    add("-netdev", opts("tap", { id: nic.id, fd: FIRST_TAP_FD + i }));
    if (nic.hotplug) return;
    add("-device", opts(microvm ? "virtio-net-device" : "virtio-net-pci", { netdev: nic.id, mac: nic.mac.toLowerCase(), romfile: microvm ? undefined : "" }));
  });
  return args;
}

function machineOption(spec: VmSpec, shared: boolean): string {
  const backend = shared ? QEMU_IDS.memory : undefined;
  if (spec.machine === "microvm") {
    return opts("microvm", { "x-option-roms": "off", "isa-serial": "on", rtc: "on", "memory-backend": backend });
  }
  return opts("q35", { vmport: "off", sata: "off", "memory-backend": backend });
}
