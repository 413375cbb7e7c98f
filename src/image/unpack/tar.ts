/**
 * A streaming tar reader: an async iterator of entries, each a header and a
 * body read straight from the source (nothing buffered beyond the chunk in
 * hand, so the consumer's pace is the source's pace). Reads ustar, pax
 * (extended headers; global headers ignored) and GNU (long names and links,
 * base-256 numbers). Refuses, as InvalidArgument naming the entry, what an
 * image layer has no business holding: sparse files, unknown entry types; and
 * a stream that ends before the end-of-archive marker.
 */
import { VmpodError } from "../../common/errors.js";
import { BLOCK, emptyPax, isZeroBlock, parseHeaderBlock, parseLongName, parsePax, type PaxRecords } from "./tar-header.js";

export type TarEntryType = "file" | "directory" | "symlink" | "hardlink" | "char" | "block" | "fifo";

export interface TarHeader {
  /** The name as the archive gives it (not normalized). */
  readonly name: string;
  readonly type: TarEntryType;
  /** Bytes of the body (0 for every type but "file"). */
  readonly size: number;
  /** Permission bits with setuid, setgid and sticky (0o7777). */
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly uname: string;
  readonly gname: string;
  /** Seconds since the epoch, fractional with pax. */
  readonly mtime: number;
  /** Symlink target or hardlink target name; "" for other types. */
  readonly linkname: string;
  readonly devmajor: number;
  readonly devminor: number;
  /** From pax SCHILY.xattr.* records. */
  readonly xattrs: ReadonlyMap<string, Buffer>;
}

export interface TarEntry {
  readonly header: TarHeader;
  /**
   * The body's bytes. Read it at most once, before asking for the next
   * entry; whatever is left unread is skipped when the iteration moves on.
   */
  body(): AsyncIterable<Buffer>;
}

/** Metadata entries (pax, GNU long names) larger than this are refused: they are held in memory. */
const MAX_META_SIZE = 1 << 20;

const TYPES: Readonly<Record<string, TarEntryType>> = {
  "0": "file",
  "\0": "file",
  "7": "file", // contiguous file: a regular file everywhere that matters
  "1": "hardlink",
  "2": "symlink",
  "3": "char",
  "4": "block",
  "5": "directory",
  "6": "fifo",
};

function invalid(message: string): VmpodError {
  return new VmpodError("InvalidArgument", message);
}

/** Pulls bytes from an async iterator of chunks, in exact or bounded amounts. */
class ByteSource {
  private chunk: Buffer = Buffer.alloc(0);
  private offset = 0;

  constructor(private readonly chunks: AsyncIterator<Buffer | string>) {}

  /** Loads the next non-empty chunk; false at the end of the stream. */
  private async fill(): Promise<boolean> {
    while (this.offset >= this.chunk.length) {
      const next = await this.chunks.next();
      if (next.done) return false;
      this.chunk = typeof next.value === "string" ? Buffer.from(next.value) : next.value;
      this.offset = 0;
    }
    return true;
  }

  /** Exactly `n` bytes, or fewer when the stream ends first (an empty buffer at the very end). */
  async read(n: number): Promise<Buffer> {
    if (!(await this.fill())) return Buffer.alloc(0);
    if (this.chunk.length - this.offset >= n) {
      const out = this.chunk.subarray(this.offset, this.offset + n);
      this.offset += n;
      return out;
    }
    const parts: Buffer[] = [];
    let got = 0;
    while (got < n && (await this.fill())) {
      const part = this.chunk.subarray(this.offset, this.offset + (n - got));
      this.offset += part.length;
      got += part.length;
      parts.push(part);
    }
    return Buffer.concat(parts, got);
  }

  /** Up to `max` bytes (at least one) from the chunk in hand; undefined at the end of the stream. */
  async readSome(max: number): Promise<Buffer | undefined> {
    if (!(await this.fill())) return undefined;
    const part = this.chunk.subarray(this.offset, this.offset + max);
    this.offset += part.length;
    return part;
  }

  /** Skips `n` bytes; returns how many were there. */
  async skip(n: number): Promise<number> {
    let skipped = 0;
    while (skipped < n && (await this.fill())) {
      const step = Math.min(n - skipped, this.chunk.length - this.offset);
      this.offset += step;
      skipped += step;
    }
    return skipped;
  }

  /** Reads and drops everything left. */
  async drain(): Promise<void> {
    while (await this.fill()) this.offset = this.chunk.length;
  }
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

/** Reads a whole metadata body (with its padding) into memory. */
async function readMeta(source: ByteSource, size: number, what: string): Promise<Buffer> {
  if (size > MAX_META_SIZE) throw invalid(`${what} of ${size} bytes is larger than the ${MAX_META_SIZE} allowed`);
  const body = await source.read(size);
  if (body.length < size || (await source.skip(padding(size))) < padding(size)) throw invalid(`tar stream is truncated inside ${what}`);
  return body;
}

/**
 * The entries of the tar stream `chunks`. The iterator ends after the
 * end-of-archive marker (two zero blocks, or GNU tar's lone one at the end of
 * the stream) and reads the stream to its end, so that a hash over it covers
 * every byte.
 */
export async function* readTar(chunks: AsyncIterable<Buffer | string>): AsyncGenerator<TarEntry, void, undefined> {
  const source = new ByteSource(chunks[Symbol.asyncIterator]());
  let pax: PaxRecords = emptyPax();
  let longName: string | undefined;
  let longLink: string | undefined;
  let last = "the first entry";
  for (;;) {
    const block = await source.read(BLOCK);
    if (block.length < BLOCK) throw invalid(`tar stream is truncated after ${last} (no end-of-archive marker)`);
    if (isZeroBlock(block)) {
      const second = await source.read(BLOCK);
      if (second.length === BLOCK && !isZeroBlock(second)) throw invalid(`tar stream has a lone zero block followed by data after ${last}`);
      if (second.length !== 0 && second.length !== BLOCK) throw invalid(`tar stream is truncated in its end-of-archive marker`);
      await source.drain();
      return;
    }
    const raw = parseHeaderBlock(block);
    const rawWhere = `entry ${JSON.stringify(longName ?? pax.path ?? raw.name)}`;
    switch (raw.typeflag) {
      case "x":
        parsePax(await readMeta(source, raw.size, `pax header of ${rawWhere}`), pax);
        continue;
      case "g":
        await readMeta(source, raw.size, "pax global header"); // global defaults: none vmpod uses
        continue;
      case "L":
        longName = parseLongName(await readMeta(source, raw.size, "GNU long name"), "GNU long name");
        continue;
      case "K":
        longLink = parseLongName(await readMeta(source, raw.size, "GNU long link name"), "GNU long link name");
        continue;
      default:
        break;
    }
    let type = TYPES[raw.typeflag];
    const name = pax.path ?? longName ?? raw.name;
    const where = `entry ${JSON.stringify(name)}`;
    if (raw.typeflag === "S" || pax.sparse) throw invalid(`${where} is a sparse file, which image layers do not hold`);
    if (type === undefined) throw invalid(`${where} has unknown type ${JSON.stringify(raw.typeflag)}`);
    // Old (v7) archives mark directories with a trailing slash on a regular entry.
    if (type === "file" && raw.typeflag === "\0" && name.endsWith("/")) type = "directory";
    const dataSize = pax.size ?? raw.size;
    const size = type === "file" ? dataSize : 0;
    const header: TarHeader = {
      name,
      type,
      size,
      mode: raw.mode & 0o7777,
      uid: pax.uid ?? raw.uid,
      gid: pax.gid ?? raw.gid,
      uname: pax.uname ?? raw.uname,
      gname: pax.gname ?? raw.gname,
      mtime: pax.mtime ?? raw.mtime,
      linkname: type === "symlink" || type === "hardlink" ? (pax.linkpath ?? longLink ?? raw.linkname) : "",
      devmajor: type === "char" || type === "block" ? raw.devmajor : 0,
      devminor: type === "char" || type === "block" ? raw.devminor : 0,
      xattrs: pax.xattrs,
    };
    pax = emptyPax();
    longName = undefined;
    longLink = undefined;
    last = where;

    let remaining = size;
    let state: "fresh" | "reading" | "done" = "fresh";
    const body = async function* (): AsyncGenerator<Buffer, void, undefined> {
      if (state !== "fresh") throw new VmpodError("Internal", `body of ${where} read twice or after the next entry`);
      state = "reading";
      while (remaining > 0) {
        const part = await source.readSome(remaining);
        if (part === undefined) throw invalid(`tar stream is truncated inside ${where}`);
        remaining -= part.length;
        yield part;
      }
    };
    yield { header, body };
    state = "done";
    // Header-only types skip no data whatever their size field says.
    const rest = remaining + padding(size);
    if ((await source.skip(rest)) < rest) throw invalid(`tar stream is truncated inside ${where}`);
  }
}
