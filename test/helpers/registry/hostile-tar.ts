/**
 * A minimal ustar writer for layers GNU tar will not write: entries named
 * `../evil`, a symlink to an absolute directory followed by a file through
 * it, a hard link to a host path. The bytes are exactly what the entries say;
 * nothing is normalized or checked, on purpose.
 */

export type HostileEntry =
  | { readonly type: "file"; readonly name: string; readonly content: string | Buffer; readonly mode?: number }
  | { readonly type: "dir"; readonly name: string; readonly mode?: number }
  | { readonly type: "symlink"; readonly name: string; readonly target: string }
  | { readonly type: "hardlink"; readonly name: string; readonly target: string };

const BLOCK = 512;
const MTIME = 1_700_000_000;

/** The tar archive of `entries`, in order, ended by two zero blocks. */
export function ustar(entries: readonly HostileEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.type === "file" ? Buffer.from(entry.content) : Buffer.alloc(0);
    parts.push(header(entry, data.length));
    if (data.length > 0) {
      parts.push(data);
      const pad = (BLOCK - (data.length % BLOCK)) % BLOCK;
      if (pad > 0) parts.push(Buffer.alloc(pad));
    }
  }
  parts.push(Buffer.alloc(2 * BLOCK));
  return Buffer.concat(parts);
}

function header(entry: HostileEntry, size: number): Buffer {
  const h = Buffer.alloc(BLOCK);
  const { name, prefix } = splitName(entry.name);
  const typeflag = { file: "0", hardlink: "1", symlink: "2", dir: "5" }[entry.type];
  const mode = "mode" in entry && entry.mode !== undefined ? entry.mode : entry.type === "dir" ? 0o755 : entry.type === "symlink" ? 0o777 : 0o644;
  put(h, 0, 100, name);
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0);
  octal(h, 116, 8, 0);
  octal(h, 124, 12, size);
  octal(h, 136, 12, MTIME);
  h.fill(0x20, 148, 156); // the checksum counts its own field as spaces
  put(h, 156, 1, typeflag);
  if (entry.type === "symlink" || entry.type === "hardlink") put(h, 157, 100, entry.target);
  put(h, 257, 6, "ustar\0");
  put(h, 263, 2, "00");
  put(h, 265, 32, "root");
  put(h, 297, 32, "root");
  octal(h, 329, 8, 0);
  octal(h, 337, 8, 0);
  put(h, 345, 155, prefix);
  let sum = 0;
  for (const byte of h) sum += byte;
  put(h, 148, 8, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** ustar keeps names over 100 bytes as prefix + "/" + name. */
function splitName(full: string): { name: string; prefix: string } {
  if (Buffer.byteLength(full) <= 100) return { name: full, prefix: "" };
  const cut = full.lastIndexOf("/", 155);
  if (cut <= 0 || Buffer.byteLength(full.slice(cut + 1)) > 100) throw new Error(`tar name too long for ustar: ${full}`);
  return { name: full.slice(cut + 1), prefix: full.slice(0, cut) };
}

function put(h: Buffer, offset: number, length: number, value: string): void {
  const bytes = Buffer.from(value);
  if (bytes.length > length) throw new Error(`tar field of ${length} bytes cannot hold ${JSON.stringify(value)}`);
  bytes.copy(h, offset);
}

/** Zero-padded octal, NUL-terminated, filling the field. */
function octal(h: Buffer, offset: number, length: number, value: number): void {
  put(h, offset, length, `${value.toString(8).padStart(length - 1, "0")}\0`);
}

/** The hostile layers the unpacker must refuse, each after one harmless file. */
export const HOSTILE_LAYERS = {
  /** A file named `../evil`: written naively, it lands beside the target directory. */
  "dot-dot": [
    { type: "file", name: "ok.txt", content: "harmless\n" },
    { type: "file", name: "../evil", content: "escaped through ..\n" },
  ],
  /** `escape -> /tmp`, then `escape/evil`: written naively, it lands in the host's /tmp. */
  "symlink-escape": [
    { type: "file", name: "ok.txt", content: "harmless\n" },
    { type: "symlink", name: "escape", target: "/tmp" },
    { type: "file", name: "escape/evil", content: "escaped through a symlink\n" },
  ],
  /** A hard link to `/etc/passwd`: made naively, it links the host's file into the layer. */
  "hardlink-escape": [
    { type: "file", name: "ok.txt", content: "harmless\n" },
    { type: "hardlink", name: "passwd", target: "/etc/passwd" },
  ],
} as const satisfies Record<string, readonly HostileEntry[]>;

export type HostileKind = keyof typeof HOSTILE_LAYERS;
