/**
 * The libc calls unpacking needs and Node does not offer (mknod and the
 * l*xattr family), through koffi. libc is loaded on first use. Failures are
 * thrown as Node-style system errors (`code` is the errno's name), like the
 * errors of node:fs, so callers treat both alike.
 */
import { constants } from "node:os";
import koffi from "koffi";

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

interface Libc {
  mknod(path: string, mode: number, dev: bigint): number;
  lsetxattr(path: string, name: string, value: Buffer, size: number, flags: number): number;
  lgetxattr(path: string, name: string, value: Buffer | null, size: number): number | bigint;
  llistxattr(path: string, list: Buffer | null, size: number): number | bigint;
}

let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const lib = koffi.load("libc.so.6");
  libc = {
    mknod: lib.func("int mknod(const char *path, uint32_t mode, uint64_t dev)") as Libc["mknod"],
    lsetxattr: lib.func("int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)") as Libc["lsetxattr"],
    lgetxattr: lib.func("intptr_t lgetxattr(const char *path, const char *name, void *value, size_t size)") as Libc["lgetxattr"],
    llistxattr: lib.func("intptr_t llistxattr(const char *path, void *list, size_t size)") as Libc["llistxattr"],
  };
  return libc;
}

export interface SystemError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  readonly path: string;
}

function systemError(syscall: string, path: string, errno: number): SystemError {
  const code = ERRNO_NAMES.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${syscall} ${path}: ${code}`), { code, errno, syscall, path });
}

function check(syscall: string, path: string, result: number | bigint): number {
  const n = Number(result);
  if (n < 0) throw systemError(syscall, path, koffi.errno());
  return n;
}

/** glibc's makedev: the 64-bit dev_t of a major and minor number. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) | (mi & 0xffn);
}

/** Creates a device node or FIFO; `mode` holds the file type (S_IF*) and permission bits. */
export function mknod(path: string, mode: number, major = 0, minor = 0): void {
  check("mknod", path, load().mknod(path, mode, makedev(major, minor)));
}

/** Sets an extended attribute on `path` itself, never on what a symlink there points to. */
export function lsetxattr(path: string, name: string, value: Buffer): void {
  check("lsetxattr", path, load().lsetxattr(path, name, value, value.length, 0));
}

/** The value of an extended attribute of `path` itself; undefined when it has none by that name. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  const c = load();
  for (;;) {
    const size = Number(c.lgetxattr(path, name, null, 0));
    if (size < 0) {
      const errno = koffi.errno();
      if (errno === constants.errno.ENODATA) return undefined;
      throw systemError("lgetxattr", path, errno);
    }
    const value = Buffer.alloc(size);
    const got = Number(c.lgetxattr(path, name, value, size));
    if (got >= 0) return value.subarray(0, got);
    if (koffi.errno() !== constants.errno.ERANGE) throw systemError("lgetxattr", path, koffi.errno()); // ERANGE: it grew meanwhile
  }
}

/** The names of the extended attributes of `path` itself. */
export function llistxattr(path: string): string[] {
  const c = load();
  for (;;) {
    const size = check("llistxattr", path, c.llistxattr(path, null, 0));
    if (size === 0) return [];
    const list = Buffer.alloc(size);
    const got = Number(c.llistxattr(path, list, size));
    if (got >= 0) return list.subarray(0, got).toString("utf8").split("\0").filter((n) => n !== "");
    if (koffi.errno() !== constants.errno.ERANGE) throw systemError("llistxattr", path, koffi.errno());
  }
}
