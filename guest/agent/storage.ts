/**
 * Storages: filesystems the guest provides for the sandbox and its
 * containers, each mounted once and counted by mount point, so that a
 * storage several containers name (a shared directory, an image layer) is
 * shared by them.
 *
 * - "virtio-fs": a shared directory by its tag (retried for a while: a
 *   hot-added device appears some time after the host adds it, and the
 *   guest kernel has no other way to tell);
 * - "local": a fresh directory;
 * - "scsi": a disk the host added, by its SCSI address "TARGET:LUN"
 *   (storage-scsi.ts), mounted with the storage's fstype (erofs for image
 *   layers) and options (`ro`);
 * - "overlayfs": a container's root filesystem over storages already
 *   acquired, with an upper layer the agent makes (storage-overlay.ts).
 *
 * A container's storages are acquired in the order given (layers before
 * the overlay on them) and released in reverse.
 */
import { chmod, chown, mkdir, rm, rmdir, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { sleep } from "../../src/common/time.js";
import { isErrno } from "./errno.js";
import { parseMountOptions } from "./mount-options.js";
import { overlayMountData, parseOverlayOptions } from "./storage-overlay.js";
import { parseScsiAddress, waitForScsiDisk } from "./storage-scsi.js";
import { checkGuestPath, resolveInside } from "./spec-policy.js";

export { parseMountOptions } from "./mount-options.js";

export const STORAGE_HANDLERS = ["virtio-fs", "local", "scsi", "overlayfs"] as const;

export interface StorageSpec {
  readonly driver: string;
  readonly source: string;
  readonly fstype: string;
  readonly options: readonly string[];
  readonly mountPoint: string;
}

export interface MountLibc {
  mount(source: string, target: string, fstype: string, flags: number, data: string): void;
  umount(target: string, flags?: number): void;
}

const MNT_DETACH = 2;
const MOUNT_RETRY_MS = 5000;
/**
 * Between tries of a virtio-fs mount. A share hot-added to a restored VM
 * appears a fraction of a second after the call (the 6.1 kernel tells
 * nothing when it does); a failed mount costs one system call, so the guest
 * tries often rather than backing off past the moment the device is there.
 */
const MOUNT_POLL_MS = 10;
const MODULES_READY_WAIT_MS = 10_000;
const DEVICE_WAIT_MS = 10_000;

/** The mode of a local storage: a `mode=0NNN` option, 0777 by default (as an emptyDir). */
export function localMode(options: readonly string[]): number {
  const option = options.find((o) => o.startsWith("mode="));
  if (option === undefined) return 0o777;
  const mode = Number.parseInt(option.slice("mode=".length), 8);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw new VmpodError("InvalidArgument", `bad local storage option ${option}`);
  return mode;
}

interface Entry {
  readonly spec: StorageSpec;
  refs: number;
  mounted: boolean;
  createdDir: boolean;
  /** The topmost directory the agent made for the mount point (its parents too, when they were missing). */
  createdFrom?: string;
  /** An overlay's own directory (upper and work), removed on release. */
  scratchDir?: string;
}

export interface StorageRegistryOptions {
  /** A file the guest's init makes once the modules loaded in the background are in (virtiofs, overlay, SCSI). */
  readonly modulesReady?: string;
  readonly mountRetryMs?: number;
  /** Waits between mount tries (tests record them); default: a timer. */
  readonly pause?: (ms: number) => Promise<void>;
  /** Where overlays' upper and work directories go (a tmpfs); one directory per overlay storage. */
  readonly scratchDir?: string;
  /** How long a "scsi" storage waits for its disk to appear. */
  readonly deviceWaitMs?: number;
  /** /sys and /dev (tests give fake trees). */
  readonly sysfs?: string;
  readonly dev?: string;
}

const DEFAULT_SCRATCH_DIR = "/run/vmpod-agent/overlay";

export class StorageRegistry {
  private readonly entries = new Map<string, Entry>();
  private modulesWaited = false;
  private overlays = 0;
  /** Acquires and releases run one at a time: two containers naming one layer must not both mount it. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly libc: MountLibc,
    private readonly log: Logger,
    private readonly options: StorageRegistryOptions = {},
  ) {}

  /** Mount points in use. */
  get mountPoints(): string[] {
    return [...this.entries.keys()];
  }

  /** Checks a storage before anything is done with it. */
  static validate(s: StorageSpec): void {
    checkGuestPath("storage mount point", s.mountPoint);
    if (!(STORAGE_HANDLERS as readonly string[]).includes(s.driver)) {
      throw new VmpodError("InvalidArgument", `unsupported storage driver ${JSON.stringify(s.driver)} (supported: ${STORAGE_HANDLERS.join(", ")})`);
    }
    if (s.driver === "virtio-fs" && s.source === "") throw new VmpodError("InvalidArgument", `virtio-fs storage on ${s.mountPoint} has no tag`);
    if (s.driver === "local") localMode(s.options);
    if (s.driver === "scsi") {
      parseScsiAddress(s.source);
      if (!/^[a-z0-9]+$/.test(s.fstype)) throw new VmpodError("InvalidArgument", `scsi storage on ${s.mountPoint} needs a file system type, not ${JSON.stringify(s.fstype)}`);
    }
    if (s.driver === "overlayfs") {
      if (s.fstype !== "" && s.fstype !== "overlay") throw new VmpodError("InvalidArgument", `overlayfs storage on ${s.mountPoint} has fstype ${JSON.stringify(s.fstype)}`);
      const { lowerDirs } = parseOverlayOptions(s.options);
      for (const dir of lowerDirs) {
        if (dir === s.mountPoint || dir.startsWith(s.mountPoint + "/")) {
          throw new VmpodError("InvalidArgument", `overlayfs storage on ${s.mountPoint} has a lower directory inside it (${dir})`);
        }
      }
    }
  }

  /** Makes the storage available (or counts one more user of it); returns its mount point. */
  async acquire(s: StorageSpec): Promise<string> {
    StorageRegistry.validate(s);
    return await this.serialized(() => this.acquireNow(s));
  }

  /** One user less; the last one unmounts (and removes what the agent created). */
  release(mountPoint: string): Promise<void> {
    return this.serialized(() => this.releaseNow(mountPoint));
  }

  /** Releases every storage, whatever its count, the latest first; reports every failure. */
  releaseAll(): Promise<void> {
    return this.serialized(async () => {
      const failures: unknown[] = [];
      for (const mountPoint of [...this.entries.keys()].reverse()) {
        const entry = this.entries.get(mountPoint);
        if (entry) entry.refs = 1;
        await this.releaseNow(mountPoint).catch((err: unknown) => failures.push(err));
      }
      if (failures.length > 0) throw new AggregateError(failures, "release storages");
    });
  }

  private serialized<T>(step: () => Promise<T>): Promise<T> {
    const result = this.queue.then(step);
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async acquireNow(s: StorageSpec): Promise<string> {
    const existing = this.entries.get(s.mountPoint);
    if (existing) {
      if (!sameStorage(existing.spec, s)) {
        throw new VmpodError("AlreadyExists", `${s.mountPoint} already holds another storage (${existing.spec.driver} ${existing.spec.source})`);
      }
      existing.refs++;
      return s.mountPoint;
    }
    const entry: Entry = { spec: s, refs: 1, mounted: false, createdDir: false };
    try {
      entry.createdDir = !(await stat(s.mountPoint).then(() => true, () => false));
      const first = await mkdir(s.mountPoint, { recursive: true });
      if (first !== undefined) entry.createdFrom = first;
      if (s.driver === "local" && entry.createdDir) await chmod(s.mountPoint, localMode(s.options));
      if (s.driver === "virtio-fs") {
        await this.mountVirtioFs(s);
        entry.mounted = true;
      } else if (s.driver === "scsi") {
        await this.mountScsi(s);
        entry.mounted = true;
      } else if (s.driver === "overlayfs") {
        await this.mountOverlay(s, entry);
        entry.mounted = true;
      }
    } catch (err) {
      if (entry.scratchDir !== undefined) await rm(entry.scratchDir, { recursive: true, force: true }).catch(() => undefined);
      if (entry.createdDir) await removeMadeDirs(s.mountPoint, entry.createdFrom);
      throw err;
    }
    this.entries.set(s.mountPoint, entry);
    this.log.info("storage ready", { driver: s.driver, source: s.source, mountPoint: s.mountPoint });
    return s.mountPoint;
  }

  private async releaseNow(mountPoint: string): Promise<void> {
    const entry = this.entries.get(mountPoint);
    if (!entry) return;
    if (--entry.refs > 0) return;
    this.entries.delete(mountPoint);
    if (entry.mounted) {
      try {
        this.libc.umount(mountPoint);
      } catch (err) {
        if (!isErrno(err, "EBUSY")) throw new VmpodError("Internal", `unmount ${mountPoint}`, { cause: err });
        this.libc.umount(mountPoint, MNT_DETACH);
      }
    }
    if (entry.scratchDir !== undefined) await rm(entry.scratchDir, { recursive: true, force: true });
    if (entry.spec.driver === "local" && entry.createdDir) await rm(mountPoint, { recursive: true, force: true });
    if (entry.createdDir) await removeMadeDirs(mountPoint, entry.createdFrom);
  }

  private async mountVirtioFs(s: StorageSpec): Promise<void> {
    await this.waitForModules();
    const { flags, data } = parseMountOptions(s.options);
    const retryMs = this.options.mountRetryMs ?? MOUNT_RETRY_MS;
    const deadline = Date.now() + retryMs;
    const pause = this.options.pause ?? sleep;
    for (;;) {
      try {
        this.libc.mount(s.source, s.mountPoint, s.fstype || "virtiofs", flags, data);
        return;
      } catch (err) {
        if (Date.now() >= deadline) {
          throw new VmpodError("Unavailable", `mount virtio-fs ${s.source} on ${s.mountPoint} (tried for ${retryMs} ms)`, { cause: err });
        }
        await pause(MOUNT_POLL_MS);
      }
    }
  }

  private async mountScsi(s: StorageSpec): Promise<void> {
    await this.waitForModules();
    const address = parseScsiAddress(s.source);
    const roots = { sysfs: this.options.sysfs ?? "/sys", dev: this.options.dev ?? "/dev" };
    const device = await waitForScsiDisk(address, roots, this.options.deviceWaitMs ?? DEVICE_WAIT_MS);
    const { flags, data } = parseMountOptions(s.options);
    try {
      this.libc.mount(device, s.mountPoint, s.fstype, flags, data);
    } catch (err) {
      throw new VmpodError("Internal", `mount ${s.fstype} ${device} (scsi ${s.source}) on ${s.mountPoint}`, { cause: err });
    }
  }

  /** Mounts the overlay on lower directories inside acquired storages; the upper and work directories are made here. */
  private async mountOverlay(s: StorageSpec, entry: Entry): Promise<void> {
    const { lowerDirs, flags } = parseOverlayOptions(s.options);
    const roots = [...this.entries.keys()];
    const lowers: string[] = [];
    for (const dir of lowerDirs) lowers.push(await resolveInside("overlayfs lower directory", dir, roots));
    await this.waitForModules();
    const scratch = join(this.options.scratchDir ?? DEFAULT_SCRATCH_DIR, String(++this.overlays));
    await rm(scratch, { recursive: true, force: true });
    await mkdir(scratch, { recursive: true, mode: 0o700 });
    entry.scratchDir = scratch;
    const upper = join(scratch, "upper");
    const work = join(scratch, "work");
    await mkdir(upper);
    await mkdir(work);
    // The root of the merged tree takes its owner and mode from the upper directory.
    const top = await stat(lowers[0] ?? "/");
    await chown(upper, top.uid, top.gid);
    await chmod(upper, top.mode & 0o7777);
    const data = overlayMountData(lowers, upper, work);
    try {
      this.libc.mount("overlay", s.mountPoint, "overlay", parseMountOptions(flags).flags, data);
    } catch (err) {
      throw new VmpodError("Internal", `mount overlay on ${s.mountPoint}`, { cause: err });
    }
  }

  private async waitForModules(): Promise<void> {
    const marker = this.options.modulesReady;
    if (marker === undefined || this.modulesWaited) return;
    const deadline = Date.now() + MODULES_READY_WAIT_MS;
    let delay = 10;
    while (!(await stat(marker).then(() => true, () => false))) {
      if (Date.now() >= deadline) {
        this.log.warn("modules are not ready; mounting anyway", { marker, waitedMs: MODULES_READY_WAIT_MS });
        break;
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 100);
    }
    this.modulesWaited = true;
  }
}

/**
 * Removes the mount point and the parents made with it, up to `top`, while
 * they are empty (another storage may have its mount point beside it).
 */
async function removeMadeDirs(mountPoint: string, top: string | undefined): Promise<void> {
  for (let dir = mountPoint; ; dir = dirname(dir)) {
    const removed = await rmdir(dir).then(
      () => true,
      (err: unknown) => isErrno(err, "ENOENT"),
    );
    if (!removed) return;
    if (top === undefined || dir === top || !dir.startsWith(top + "/")) return;
  }
}

/** Whether a second request for a mount point names the storage already there. */
function sameStorage(a: StorageSpec, b: StorageSpec): boolean {
  if (a.driver !== b.driver || a.source !== b.source) return false;
  if (a.driver === "scsi" || a.driver === "overlayfs") {
    return a.fstype === b.fstype && a.options.length === b.options.length && a.options.every((o, i) => o === b.options[i]);
  }
  return true;
}
