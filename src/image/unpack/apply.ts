/**
 * Writes tar entries into a layer directory in overlayfs form, treating the
 * archive as hostile: names are confined to the root, nothing is ever written
 * through a symlink, hardlinks only join entries of the same layer, and the
 * image cannot set overlayfs's own xattrs. Any entry that breaks these rules
 * refuses the whole layer (InvalidArgument naming the entry).
 *
 * The directory is the unpacker's alone while it works (the caller made it
 * empty and renames it into place afterwards), so what this file has checked
 * or created stays true until this file changes it; the sets below remember
 * it, and anything removed is forgotten with everything below it.
 */
import { constants, type Stats } from "node:fs";
import { chmod, link, lchown, lstat, lutimes, mkdir, open, rm, symlink, unlink } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError, wrap } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import { ancestorsOf, isForbiddenXattr, normalizeEntryName, roleOf } from "./paths.js";
import { lsetxattr, mknod, S_IFBLK, S_IFCHR, S_IFIFO } from "./syscalls.js";
import type { TarEntry, TarHeader } from "./tar.js";

/** Bytes of a file body gathered before they are written. */
const WRITE_BATCH = 1 << 20;
const CREATE_FILE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
const OPAQUE_XATTR = "trusted.overlay.opaque";
/** The largest uid or gid (2^32 - 1 means "no change" to chown). */
const MAX_ID = 0xfffffffe;

function refuse(message: string): VmpodError {
  return new VmpodError("InvalidArgument", message);
}

async function lstatOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
}

export class LayerApplier {
  /** Paths known to be real directories (the root is ""). */
  private readonly dirs = new Set<string>([""]);
  /** Non-directories this layer has written: the only valid hardlink targets. */
  private readonly linkable = new Set<string>();
  /** Directories' mtimes, set at the end since adding children changes them. */
  private readonly dirTimes = new Map<string, number>();
  private count = 0;

  constructor(
    private readonly root: string,
    private readonly logger: Logger,
  ) {}

  /** Entries applied so far (whiteouts and ignored AUFS metadata included). */
  get entries(): number {
    return this.count;
  }

  /** Writes one entry, reading its body. */
  async apply(entry: TarEntry): Promise<void> {
    const what = `entry ${JSON.stringify(entry.header.name)}`;
    try {
      await this.applyEntry(entry, what);
    } catch (err) {
      if (err instanceof VmpodError) throw err;
      throw wrap(`unpack ${what}`, err);
    }
  }

  /** Sets the directories' times, once every entry is in. */
  async finish(): Promise<void> {
    for (const [path, mtime] of this.dirTimes) {
      try {
        await lutimes(this.abs(path), mtime, mtime);
      } catch (err) {
        throw wrap(`set times of ${JSON.stringify(path)}`, err);
      }
    }
  }

  private abs(path: string): string {
    return path === "" ? this.root : join(this.root, path);
  }

  private async applyEntry(entry: TarEntry, what: string): Promise<void> {
    const h = entry.header;
    const path = normalizeEntryName(h.name, what);
    this.count++;
    const role = roleOf(path, what);
    switch (role.kind) {
      case "ignored":
        return;
      case "opaque":
        await this.ensureParents(path, what); // the directory is the marker's parent: made if missing, refused if a symlink
        lsetxattr(this.abs(role.dir), OPAQUE_XATTR, Buffer.from("y"));
        return;
      case "whiteout":
        await this.ensureParents(path, what);
        await this.removeAt(role.path);
        mknod(this.abs(role.path), S_IFCHR, 0, 0);
        return;
      case "plain":
        break;
    }
    if (path === "" && h.type !== "directory") throw refuse(`${what} would replace the layer's root with a ${h.type}`);
    if (h.uid > MAX_ID || h.gid > MAX_ID) throw refuse(`${what}: owner ${h.uid}:${h.gid} is out of range`);
    await this.ensureParents(path, what);
    const abs = this.abs(path);
    switch (h.type) {
      case "directory":
        await this.ensureDirectory(path);
        await lchown(abs, h.uid, h.gid);
        await chmod(abs, h.mode);
        this.setXattrs(abs, h);
        this.dirTimes.set(path, h.mtime);
        return;
      case "file":
        await this.removeAt(path);
        await this.writeFile(abs, entry);
        break;
      case "symlink":
        await this.removeAt(path);
        await symlink(h.linkname, abs);
        await lchown(abs, h.uid, h.gid);
        this.setXattrs(abs, h);
        await lutimes(abs, h.mtime, h.mtime);
        break;
      case "hardlink":
        await this.hardlink(path, h, what);
        break;
      case "char":
      case "block":
      case "fifo": {
        await this.removeAt(path);
        const type = h.type === "char" ? S_IFCHR : h.type === "block" ? S_IFBLK : S_IFIFO;
        mknod(abs, type | 0o600, h.devmajor, h.devminor);
        await lchown(abs, h.uid, h.gid);
        await chmod(abs, h.mode);
        this.setXattrs(abs, h);
        await lutimes(abs, h.mtime, h.mtime);
        break;
      }
    }
    this.linkable.add(path);
  }

  /** O_EXCL|O_NOFOLLOW: never opens anything already there, symlink or not. */
  private async writeFile(abs: string, entry: TarEntry): Promise<void> {
    const h = entry.header;
    const file = await open(abs, CREATE_FILE, 0o600);
    try {
      // The body arrives in the decompressor's chunks, often tens of KiB:
      // written in batches, one system call (and one trip through the
      // thread pool) per WRITE_BATCH bytes.
      let batch: Buffer[] = [];
      let batched = 0;
      const flush = async () => {
        if (batched === 0) return;
        const data = batch.length === 1 ? (batch[0] as Buffer) : Buffer.concat(batch, batched);
        batch = [];
        batched = 0;
        for (let done = 0; done < data.length; ) done += (await file.write(data, done)).bytesWritten;
      };
      for await (const chunk of entry.body()) {
        batch.push(chunk);
        batched += chunk.length;
        if (batched >= WRITE_BATCH) await flush();
      }
      await flush();
      await file.chown(h.uid, h.gid);
      await file.chmod(h.mode); // after chown, which clears setuid and setgid
      this.setXattrs(abs, h); // after chown too, which drops security.capability
      await file.utimes(h.mtime, h.mtime);
    } finally {
      await file.close();
    }
  }

  private async hardlink(path: string, h: TarHeader, what: string): Promise<void> {
    const target = normalizeEntryName(h.linkname, `${what}: hardlink target ${JSON.stringify(h.linkname)}`);
    if (!this.linkable.has(target)) {
      throw refuse(`${what}: hardlink target ${JSON.stringify(h.linkname)} is not a file written earlier by this layer`);
    }
    if (target === path) throw refuse(`${what} is a hardlink to itself`);
    await this.ensureParents(target, `${what}: hardlink target ${JSON.stringify(h.linkname)}`, false);
    const st = await lstatOrUndefined(this.abs(target));
    if (st === undefined || st.isDirectory()) {
      throw refuse(`${what}: hardlink target ${JSON.stringify(h.linkname)} is ${st ? "a directory" : "missing"}`);
    }
    await this.removeAt(path);
    await link(this.abs(target), this.abs(path)); // link(2) does not follow a symlink target
  }

  /**
   * Makes sure every ancestor of `path` is a real directory inside the root,
   * creating missing ones (0755 root:root) when `create`; a symlink or a
   * non-directory among them refuses the layer.
   */
  private async ensureParents(path: string, what: string, create = true): Promise<void> {
    for (const dir of ancestorsOf(path)) {
      if (this.dirs.has(dir)) continue;
      const st = await lstatOrUndefined(this.abs(dir));
      if (st === undefined && create) {
        await this.makeDirectory(dir, 0o755);
        continue;
      }
      if (st === undefined) throw refuse(`${what}: ${JSON.stringify(dir)} does not exist`);
      if (st.isSymbolicLink()) throw refuse(`${what} goes through symlink ${JSON.stringify(dir)}`);
      if (!st.isDirectory()) throw refuse(`${what}: ${JSON.stringify(dir)} is not a directory`);
      this.dirs.add(dir);
    }
  }

  /** A real directory at `path` (whose parents are checked): kept if there, else made 0755 root:root in place of what is. */
  private async ensureDirectory(path: string): Promise<void> {
    if (this.dirs.has(path)) return;
    const st = await lstatOrUndefined(this.abs(path));
    if (st?.isDirectory()) {
      this.dirs.add(path);
      return;
    }
    if (st) await this.removeAt(path);
    await this.makeDirectory(path, 0o755);
  }

  private async makeDirectory(path: string, mode: number): Promise<void> {
    const abs = this.abs(path);
    await mkdir(abs, 0o700);
    await lchown(abs, 0, 0); // a setgid parent would hand down its group
    await chmod(abs, mode); // not left to the umask
    this.dirs.add(path);
  }

  /** Removes whatever is at `path` (a directory with its contents; a symlink itself, never its target). */
  private async removeAt(path: string): Promise<void> {
    if (path === "") throw new VmpodError("Internal", "refusing to remove the layer's root");
    const st = await lstatOrUndefined(this.abs(path));
    if (st === undefined) return;
    if (st.isDirectory()) {
      await rm(this.abs(path), { recursive: true, force: true });
      this.forgetTree(path);
    } else {
      await unlink(this.abs(path));
      this.forget(path);
    }
  }

  private forget(path: string): void {
    this.dirs.delete(path);
    this.linkable.delete(path);
    this.dirTimes.delete(path);
  }

  private forgetTree(path: string): void {
    this.forget(path);
    const prefix = `${path}/`;
    for (const set of [this.dirs, this.linkable]) {
      for (const p of set) if (p.startsWith(prefix)) set.delete(p);
    }
    for (const p of this.dirTimes.keys()) if (p.startsWith(prefix)) this.dirTimes.delete(p);
  }

  /** The entry's xattrs, minus those that would forge overlayfs metadata. */
  private setXattrs(abs: string, h: TarHeader): void {
    for (const [name, value] of h.xattrs) {
      if (isForbiddenXattr(name)) {
        this.logger.debug("dropped an overlayfs xattr the image tried to set", { entry: h.name, xattr: name });
        continue;
      }
      try {
        lsetxattr(abs, name, value);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        // The filesystem has no xattrs of this kind, or (user.*) none on this file type.
        const unsupported = code === "ENOTSUP" || code === "EOPNOTSUPP" || (code === "EPERM" && name.startsWith("user.") && h.type !== "file" && h.type !== "directory");
        if (!unsupported) throw err;
        this.logger.debug("skipped an xattr the filesystem does not take", { entry: h.name, xattr: name, code });
      }
    }
  }
}
