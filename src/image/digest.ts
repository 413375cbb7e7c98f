/**
 * Content digests (`sha256:<64 hex>`), and a pass-through stream that hashes
 * and counts what flows through it and fails at the end when the content is
 * not what its descriptor promised. Only sha256 is accepted: it is what every
 * registry serves, and accepting less would weaken the store.
 */
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { VmpodError } from "../common/errors.js";

export type Digest = `sha256:${string}`;

const DIGEST = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: string): value is Digest {
  return DIGEST.test(value);
}

export function parseDigest(value: string, what = "digest"): Digest {
  if (!isDigest(value)) throw new VmpodError("InvalidArgument", `${what} ${JSON.stringify(value)} is not a sha256 digest`);
  return value;
}

/** The 64 hex characters of a digest: a safe file name. */
export function digestHex(digest: Digest): string {
  return digest.slice("sha256:".length);
}

export function digestOf(data: Uint8Array | string): Digest {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

/**
 * Counts and hashes the bytes passing through. With `expected`, the stream
 * errors (InvalidArgument) as soon as more bytes arrive than the size
 * allows, and `check()`, called once everything has passed, throws when the
 * digest or the size differs. The check is the caller's step, not an error
 * at the stream's end, so that it cannot be lost by a reader that has
 * already stopped listening.
 */
export class DigestingStream extends Transform {
  private readonly hash: Hash = createHash("sha256");
  private count = 0;

  constructor(private readonly expected?: { readonly digest: Digest; readonly size?: number; readonly what?: string }) {
    super();
  }

  /** Bytes seen so far. */
  get size(): number {
    return this.count;
  }

  /** The digest of everything seen; only meaningful once the stream has ended. */
  digest(): Digest {
    return `sha256:${this.hash.copy().digest("hex")}`;
  }

  /** Throws (InvalidArgument, naming both digests) unless what passed is what was expected. */
  check(): void {
    const expected = this.expected;
    if (!expected) return;
    if (expected.size !== undefined && this.count !== expected.size) {
      throw new VmpodError("InvalidArgument", `${this.what()} has ${this.count} bytes, its descriptor gives ${expected.size}`);
    }
    const actual = this.digest();
    if (actual !== expected.digest) throw new VmpodError("InvalidArgument", `${this.what()} has digest ${actual}, expected ${expected.digest}`);
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.count += chunk.length;
    const size = this.expected?.size;
    if (size !== undefined && this.count > size) {
      callback(new VmpodError("InvalidArgument", `${this.what()} is larger than the ${size} bytes its descriptor gives`));
      return;
    }
    this.hash.update(chunk);
    callback(null, chunk);
  }

  private what(): string {
    return this.expected?.what ?? `blob ${this.expected?.digest ?? ""}`;
  }
}
