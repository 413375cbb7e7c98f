/**
 * Storages: filesystems the guest provides for the sandbox and its
 * containers. "virtio-fs" mounts a shared directory by its tag (retried for
 * a while: a hot-added device appears some time after the host adds it, and
 * the guest kernel has no other way to tell); "local" is a fresh directory.
 * A mount point used by several containers is mounted once and counted.
 */
import { chmod, mkdir, rm, rmdir, stat } from "node:fs/promises";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { sleep } from "../../src/common/time.js";
import { isErrno } from "./errno.js";
import { checkGuestPath } from "./spec-policy.js";

export const STORAGE_HANDLERS = ["virtio-fs", "local"] as const;

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
const MODULES_READY_WAIT_MS = 10_000;

const FLAGS: Record<string, number> = {
  ro: 1,
  rw: 0,
  nosuid: 2,
  nodev: 4,
  noexec: 8,
  sync: 16,
  dirsync: 128,
  noatime: 1024,
  nodiratime: 2048,
  relatime: 1 << 21,
  strictatime: 1 << 24,
  defaults: 0,
};

/** mount(8)-style options → mount(2) flags and the filesystem's own data string. */
export function parseMountOptions(options: readonly string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const option of options) {
    const flag = FLAGS[option];
    if (flag !== undefined) flags |= flag;
    else if (option !== "") data.push(option);
  }
  return { flags, data: data.join(",") };
}

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
}

export class StorageRegistry {
  private readonly entries = new Map<string, Entry>();
  private modulesWaited = false;

  constructor(
    private readonly libc: MountLibc,
    private readonly log: Logger,
    private readonly options: {
      /** A file the guest's init makes once the virtiofs module is loaded (it loads while the agent starts). */
      readonly modulesReady?: string;
      readonly mountRetryMs?: number;
    } = {},
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
  }

  /** Makes the storage available (or counts one more user of it); returns its mount point. */
  async acquire(s: StorageSpec): Promise<string> {
    StorageRegistry.validate(s);
    const existing = this.entries.get(s.mountPoint);
    if (existing) {
      if (existing.spec.driver !== s.driver || existing.spec.source !== s.source) {
        throw new VmpodError("AlreadyExists", `${s.mountPoint} already holds another storage (${existing.spec.driver} ${existing.spec.source})`);
      }
      existing.refs++;
      return s.mountPoint;
    }
    const entry: Entry = { spec: s, refs: 1, mounted: false, createdDir: false };
    try {
      entry.createdDir = !(await stat(s.mountPoint).then(() => true, () => false));
      await mkdir(s.mountPoint, { recursive: true });
      if (s.driver === "local" && entry.createdDir) await chmod(s.mountPoint, localMode(s.options));
      if (s.driver === "virtio-fs") {
        await this.mountVirtioFs(s);
        entry.mounted = true;
      }
    } catch (err) {
      if (entry.createdDir) await rmdir(s.mountPoint).catch(() => undefined);
      throw err;
    }
    this.entries.set(s.mountPoint, entry);
    this.log.info("storage ready", { driver: s.driver, source: s.source, mountPoint: s.mountPoint });
    return s.mountPoint;
  }

  /** One user less; the last one unmounts (and removes what the agent created). */
  async release(mountPoint: string): Promise<void> {
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
    if (entry.spec.driver === "local" && entry.createdDir) await rm(mountPoint, { recursive: true, force: true });
    else if (entry.createdDir) await rmdir(mountPoint).catch(() => undefined);
  }

  /** Releases every storage, whatever its count; reports every failure. */
  async releaseAll(): Promise<void> {
    const failures: unknown[] = [];
    for (const mountPoint of [...this.entries.keys()].reverse()) {
      const entry = this.entries.get(mountPoint);
      if (entry) entry.refs = 1;
      await this.release(mountPoint).catch((err: unknown) => failures.push(err));
    }
    if (failures.length > 0) throw new AggregateError(failures, "release storages");
  }

  private async mountVirtioFs(s: StorageSpec): Promise<void> {
    await this.waitForModules();
    const { flags, data } = parseMountOptions(s.options);
    const retryMs = this.options.mountRetryMs ?? MOUNT_RETRY_MS;
    const deadline = Date.now() + retryMs;
    let delay = 20;
    for (;;) {
      try {
        this.libc.mount(s.source, s.mountPoint, s.fstype || "virtiofs", flags, data);
        return;
      } catch (err) {
        if (Date.now() >= deadline) {
          throw new VmpodError("Unavailable", `mount virtio-fs ${s.source} on ${s.mountPoint} (tried for ${retryMs} ms)`, { cause: err });
        }
        await sleep(delay);
        delay = Math.min(delay * 2, 250);
      }
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
