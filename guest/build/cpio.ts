/**
 * A writer of "newc" cpio archives, the format the kernel unpacks as an
 * initramfs. Written here rather than run through cpio(1) so that device nodes
 * (dev/console) need no root, and so that the archive is reproducible
 * (fixed owners, times and inode numbers).
 */

export type CpioEntry =
  | { readonly type: "dir"; readonly path: string; readonly mode?: number }
  | { readonly type: "file"; readonly path: string; readonly data: Uint8Array; readonly mode?: number }
  | { readonly type: "symlink"; readonly path: string; readonly target: string }
  | { readonly type: "char"; readonly path: string; readonly major: number; readonly minor: number; readonly mode?: number };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

const TRAILER = "TRAILER!!!";

/** Builds a newc archive of `entries` in the order given (parents before children). */
export function buildCpio(entries: readonly CpioEntry[]): Buffer {
  const chunks: Buffer[] = [];
  let offset = 0;
  const push = (chunk: Buffer) => {
    chunks.push(chunk);
    offset += chunk.length;
  };
  const pad = () => {
    const rest = offset % 4;
    if (rest !== 0) push(Buffer.alloc(4 - rest));
  };
  const seen = new Set<string>();
  let ino = 1;
  for (const entry of entries) {
    const path = normalize(entry.path);
    if (seen.has(path)) throw new RangeError(`cpio: duplicate entry ${path}`);
    seen.add(path);
    const { mode, data, rdev } = describe(entry);
    push(header({ ino: ino++, mode, nlink: entry.type === "dir" ? 2 : 1, size: data.length, rdev, nameSize: Buffer.byteLength(path) + 1 }));
    push(Buffer.from(path + "\0"));
    pad();
    if (data.length > 0) push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    pad();
  }
  push(header({ ino: 0, mode: 0, nlink: 1, size: 0, rdev: [0, 0], nameSize: TRAILER.length + 1 }));
  push(Buffer.from(TRAILER + "\0"));
  pad();
  return Buffer.concat(chunks, offset);
}

function describe(entry: CpioEntry): { mode: number; data: Uint8Array; rdev: [number, number] } {
  switch (entry.type) {
    case "dir":
      return { mode: S_IFDIR | (entry.mode ?? 0o755), data: new Uint8Array(0), rdev: [0, 0] };
    case "file":
      return { mode: S_IFREG | (entry.mode ?? 0o644), data: entry.data, rdev: [0, 0] };
    case "symlink":
      return { mode: S_IFLNK | 0o777, data: Buffer.from(entry.target), rdev: [0, 0] };
    case "char":
      return { mode: S_IFCHR | (entry.mode ?? 0o600), data: new Uint8Array(0), rdev: [entry.major, entry.minor] };
  }
}

function normalize(path: string): string {
  const clean = path.replace(/^\/+/, "").replace(/\/+$/, "");
  if (clean === "" || clean.split("/").some((part) => part === "" || part === "." || part === "..")) {
    throw new RangeError(`cpio: bad path ${JSON.stringify(path)}`);
  }
  return clean;
}

function header(h: { ino: number; mode: number; nlink: number; size: number; rdev: [number, number]; nameSize: number }): Buffer {
  const fields = [h.ino, h.mode, 0, 0, h.nlink, 0, h.size, 0, 0, h.rdev[0], h.rdev[1], h.nameSize, 0];
  return Buffer.from("070701" + fields.map((n) => n.toString(16).padStart(8, "0")).join(""), "ascii");
}
