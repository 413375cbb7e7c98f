/**
 * A small tar writer for tests. It writes what it is told, checking nothing,
 * so tests can build the hostile archives (escaping names, links through
 * symlinks, forged xattrs, bad checksums) that real tar tools refuse to make.
 */

export type WriterEntryType = "file" | "directory" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface WriterEntry {
  readonly name: string;
  readonly type?: WriterEntryType;
  /** A raw type flag, written instead of `type`'s ("S", "V", ...). */
  readonly typeflag?: string;
  readonly body?: string | Buffer;
  /** The size field, when it must differ from the body's length. */
  readonly size?: number;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly uname?: string;
  readonly gname?: string;
  /** Seconds since the epoch. */
  readonly mtime?: number;
  readonly linkname?: string;
  readonly devmajor?: number;
  readonly devminor?: number;
  /** The ustar prefix field. */
  readonly prefix?: string;
  /** Records of a pax extended header written before the entry. */
  readonly pax?: Readonly<Record<string, string | Buffer>>;
  /** A GNU long name ('L') entry written before this one. */
  readonly gnuLongName?: string;
  /** A GNU long link ('K') entry written before this one. */
  readonly gnuLongLink?: string;
  /** Write a wrong checksum. */
  readonly badChecksum?: boolean;
}

export interface WriterOptions {
  /** "ustar" (POSIX magic, the default) or "gnu" (GNU magic). */
  readonly format?: "ustar" | "gnu";
  /** Number of zero blocks at the end (2 unless told). */
  readonly endBlocks?: number;
}

const FLAGS: Record<WriterEntryType, string> = {
  file: "0",
  hardlink: "1",
  symlink: "2",
  char: "3",
  block: "4",
  directory: "5",
  fifo: "6",
};

function writeString(block: Buffer, offset: number, length: number, value: string | Buffer): void {
  const bytes = typeof value === "string" ? Buffer.from(value) : value;
  bytes.copy(block, offset, 0, Math.min(length, bytes.length));
}

/** Octal when it fits (length - 1 digits and a NUL), else base-256. */
function writeNumber(block: Buffer, offset: number, length: number, value: number): void {
  const octal = value >= 0 ? value.toString(8) : "";
  if (value >= 0 && octal.length <= length - 1) {
    writeString(block, offset, length, octal.padStart(length - 1, "0") + "\0");
    return;
  }
  let v = BigInt(value);
  for (let i = length - 1; i >= 0; i--) {
    block[offset + i] = Number(v & 0xffn);
    v >>= 8n;
  }
  block[offset] = value < 0 ? 0xff : 0x80;
}

function header(e: WriterEntry, flag: string, size: number, format: "ustar" | "gnu"): Buffer {
  const block = Buffer.alloc(512);
  writeString(block, 0, 100, e.name);
  writeNumber(block, 100, 8, e.mode ?? (flag === "5" ? 0o755 : 0o644));
  writeNumber(block, 108, 8, e.uid ?? 0);
  writeNumber(block, 116, 8, e.gid ?? 0);
  writeNumber(block, 124, 12, size);
  writeNumber(block, 136, 12, e.mtime ?? 1_700_000_000);
  writeString(block, 148, 8, "        ");
  writeString(block, 156, 1, flag);
  writeString(block, 157, 100, e.linkname ?? "");
  if (format === "gnu") writeString(block, 257, 8, "ustar  \0");
  else writeString(block, 257, 8, "ustar\x0000");
  writeString(block, 265, 32, e.uname ?? "");
  writeString(block, 297, 32, e.gname ?? "");
  writeNumber(block, 329, 8, e.devmajor ?? 0);
  writeNumber(block, 337, 8, e.devminor ?? 0);
  if (e.prefix !== undefined && format === "ustar") writeString(block, 345, 155, e.prefix);
  let sum = 0;
  for (const b of block) sum += b;
  if (e.badChecksum) sum += 1;
  writeString(block, 148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return block;
}

function withPadding(data: Buffer): Buffer[] {
  const pad = (512 - (data.length % 512)) % 512;
  return [data, Buffer.alloc(pad)];
}

/** One pax record: "LEN KEY=VALUE\n", LEN counting itself. */
export function paxRecord(key: string, value: string | Buffer): Buffer {
  const rest = Buffer.concat([Buffer.from(` ${key}=`), typeof value === "string" ? Buffer.from(value) : value, Buffer.from("\n")]);
  let len = rest.length + 1;
  while (String(len).length + rest.length !== len) len = String(len).length + rest.length;
  return Buffer.concat([Buffer.from(String(len)), rest]);
}

/** The tar archive of `entries`, ending with the end-of-archive marker unless told otherwise. */
export function makeTar(entries: readonly WriterEntry[], options: WriterOptions = {}): Buffer {
  const format = options.format ?? "ustar";
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      const body = Buffer.concat(Object.entries(e.pax).map(([k, v]) => paxRecord(k, v)));
      parts.push(header({ name: "PaxHeaders/x" }, "x", body.length, format), ...withPadding(body));
    }
    if (e.gnuLongName !== undefined) {
      const body = Buffer.from(e.gnuLongName + "\0");
      parts.push(header({ name: "././@LongLink" }, "L", body.length, "gnu"), ...withPadding(body));
    }
    if (e.gnuLongLink !== undefined) {
      const body = Buffer.from(e.gnuLongLink + "\0");
      parts.push(header({ name: "././@LongLink" }, "K", body.length, "gnu"), ...withPadding(body));
    }
    const type = e.type ?? "file";
    const flag = e.typeflag ?? FLAGS[type];
    const body = e.body === undefined ? Buffer.alloc(0) : typeof e.body === "string" ? Buffer.from(e.body) : e.body;
    parts.push(header(e, flag, e.size ?? body.length, format), ...withPadding(body));
  }
  parts.push(Buffer.alloc(512 * (options.endBlocks ?? 2)));
  return Buffer.concat(parts);
}
