/**
 * SCSI disks the host added while the VM runs (image layers): the "scsi"
 * storage's source is the disk's address "TARGET:LUN" on the VM's one SCSI
 * controller (Kata's form), and the disk is the block device the kernel
 * lists under /sys/bus/scsi/devices/HOST:0:TARGET:LUN/block/. It appears
 * some time after the host's device_add (the controller's hot-plug event,
 * then the disk's probe); if it is slow to, the controllers are asked to
 * scan that address, in case the event was missed.
 */
import { readdir, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import { sleep } from "../../src/common/time.js";

export interface ScsiAddress {
  readonly target: number;
  readonly lun: number;
}

const MAX_TARGET = 255;
const MAX_LUN = 16383;
/** How long before asking the controllers to scan the address themselves. */
const RESCAN_AFTER_MS = 1000;

/** Parses "TARGET:LUN"; InvalidArgument otherwise. */
export function parseScsiAddress(source: string): ScsiAddress {
  const match = /^(\d{1,3}):(\d{1,5})$/.exec(source);
  const target = Number(match?.[1]);
  const lun = Number(match?.[2]);
  if (!match || target > MAX_TARGET || lun > MAX_LUN) {
    throw new VmpodError("InvalidArgument", `bad SCSI address ${JSON.stringify(source)}: expected TARGET:LUN (0..${MAX_TARGET}:0..${MAX_LUN})`);
  }
  return { target, lun };
}

export interface ScsiRoots {
  /** /sys, or a fake tree in tests. */
  readonly sysfs: string;
  /** /dev. */
  readonly dev: string;
}

/** The device node of the disk at `address` (e.g. /dev/sdb), once it is there; undefined while it is not. */
export async function findScsiDisk(address: ScsiAddress, roots: ScsiRoots): Promise<string | undefined> {
  const devices = join(roots.sysfs, "bus/scsi/devices");
  const names = await readdir(devices).catch(() => [] as string[]);
  const wanted = new RegExp(`^\\d+:0:${address.target}:${address.lun}$`);
  for (const name of names) {
    if (!wanted.test(name)) continue;
    const blocks = await readdir(join(devices, name, "block")).catch(() => [] as string[]);
    const disk = blocks.find((b) => /^[A-Za-z0-9]+$/.test(b));
    if (disk === undefined) continue;
    const node = join(roots.dev, disk);
    // devtmpfs makes the node a little after sysfs lists the disk.
    if (await stat(node).then(() => true, () => false)) return node;
  }
  return undefined;
}

/** Asks every SCSI controller to scan `address` (channel 0). */
async function rescan(address: ScsiAddress, roots: ScsiRoots): Promise<void> {
  const hosts = join(roots.sysfs, "class/scsi_host");
  for (const host of await readdir(hosts).catch(() => [] as string[])) {
    await writeFile(join(hosts, host, "scan"), `0 ${address.target} ${address.lun}`).catch(() => undefined);
  }
}

/** Waits for the disk at `address`; Unavailable after `timeoutMs`. */
export async function waitForScsiDisk(address: ScsiAddress, roots: ScsiRoots, timeoutMs: number): Promise<string> {
  const start = Date.now();
  let rescanned = false;
  let delay = 10;
  for (;;) {
    const node = await findScsiDisk(address, roots);
    if (node !== undefined) return node;
    const waited = Date.now() - start;
    if (waited >= timeoutMs) {
      throw new VmpodError("Unavailable", `no SCSI disk at ${address.target}:${address.lun} after ${timeoutMs} ms`);
    }
    if (!rescanned && waited >= RESCAN_AFTER_MS) {
      rescanned = true;
      await rescan(address, roots);
    }
    await sleep(Math.min(delay, Math.max(1, timeoutMs - waited)));
    delay = Math.min(delay * 2, 100);
  }
}
