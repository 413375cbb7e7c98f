/**
 * SPDY/3 header blocks: the name/value block layout (32-bit counts and
 * lengths, lowercase names, several values of one name joined by NUL) and
 * its compression. Each direction of a connection has one zlib context,
 * primed with the SPDY/3 dictionary and kept for the connection's life;
 * every block ends with a sync flush so the peer can decode it at once.
 */
import zlib from "node:zlib";
import { VmpodError } from "../../common/errors.js";
import { SPDY3_DICTIONARY } from "./spdy-dictionary.js";

/** Header names (lowercase) to their values. */
export type HeaderMap = ReadonlyMap<string, readonly string[]>;

/** The largest decompressed header block accepted from a peer. */
export const MAX_HEADER_BLOCK = 256 * 1024;

export function encodeHeaderBlock(headers: HeaderMap): Buffer {
  const parts: Buffer[] = [u32(headers.size)];
  for (const [name, values] of headers) {
    const n = Buffer.from(name.toLowerCase(), "utf8");
    const v = Buffer.from(values.join("\0"), "utf8");
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeHeaderBlock(block: Buffer): Map<string, string[]> {
  const headers = new Map<string, string[]>();
  let at = 0;
  const read = (bytes: number): Buffer => {
    if (at + bytes > block.length) throw new VmpodError("InvalidArgument", "spdy protocol error: truncated header block");
    const out = block.subarray(at, at + bytes);
    at += bytes;
    return out;
  };
  const count = read(4).readUInt32BE(0);
  for (let i = 0; i < count; i++) {
    const name = read(read(4).readUInt32BE(0)).toString("utf8");
    const value = read(read(4).readUInt32BE(0)).toString("utf8");
    if (name.length === 0) throw new VmpodError("InvalidArgument", "spdy protocol error: empty header name");
    if (headers.has(name)) throw new VmpodError("InvalidArgument", `spdy protocol error: header ${name} twice`);
    headers.set(name, value.split("\0"));
  }
  if (at !== block.length) throw new VmpodError("InvalidArgument", "spdy protocol error: bytes after the header block");
  return headers;
}

function u32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(value);
  return b;
}

/**
 * One zlib stream used block by block: each call writes a block and a sync
 * flush and resolves with what the stream produced for it. Calls are
 * serialized so blocks never interleave.
 */
class BlockCodec {
  private parts: Buffer[] = [];
  private size = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private failed: Error | undefined;
  private closed = false;

  constructor(
    private readonly z: zlib.Deflate | zlib.Inflate,
    private readonly limit: number,
  ) {
    z.on("data", (chunk: Buffer) => {
      this.parts.push(chunk);
      this.size += chunk.length;
    });
    z.on("error", (err) => {
      this.failed = err;
    });
  }

  run(block: Buffer): Promise<Buffer> {
    const result = this.tail.then(() => this.runOne(block));
    this.tail = result.catch(() => undefined);
    return result;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.z.close();
  }

  private runOne(block: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.closed) return reject(new VmpodError("Canceled", "spdy header context closed"));
      if (this.failed) return reject(new VmpodError("InvalidArgument", "spdy header block", { cause: this.failed }));
      const onError = (err: Error) => reject(new VmpodError("InvalidArgument", "spdy header block", { cause: err }));
      this.z.once("error", onError);
      this.z.write(block);
      this.z.flush(zlib.constants.Z_SYNC_FLUSH, () => {
        this.z.off("error", onError);
        if (this.failed) return;
        const out = Buffer.concat(this.parts, this.size);
        this.parts = [];
        this.size = 0;
        if (out.length > this.limit) return reject(new VmpodError("InvalidArgument", `spdy header block of ${out.length} bytes is too large`));
        resolve(out);
      });
    });
  }
}

/** Compresses this end's header blocks. */
export class HeaderCompressor {
  private readonly codec = new BlockCodec(zlib.createDeflate({ dictionary: SPDY3_DICTIONARY }), Number.MAX_SAFE_INTEGER);

  compress(headers: HeaderMap): Promise<Buffer> {
    return this.codec.run(encodeHeaderBlock(headers));
  }

  close(): void {
    this.codec.close();
  }
}

/** Decompresses the peer's header blocks. */
export class HeaderDecompressor {
  private readonly codec = new BlockCodec(zlib.createInflate({ dictionary: SPDY3_DICTIONARY }), MAX_HEADER_BLOCK);

  async decompress(block: Buffer): Promise<Map<string, string[]>> {
    // An empty block is allowed (HEADERS or SYN_REPLY with no headers at all).
    if (block.length === 0) return new Map();
    return decodeHeaderBlock(await this.codec.run(block));
  }

  close(): void {
    this.codec.close();
  }
}

/** Builds a HeaderMap from plain pairs. */
export function headerMap(pairs: Readonly<Record<string, string | readonly string[]>>): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const [name, value] of Object.entries(pairs)) map.set(name.toLowerCase(), typeof value === "string" ? [value] : [...value]);
  return map;
}
