/**
 * Content-addressed blobs (manifests, indexes, configs): written once,
 * verified before they are kept, read back verified. Layers do not stay
 * here: they are unpacked as they download and only their partial download
 * is kept, to resume an interrupted pull.
 */
import { readFile, readdir, rm, stat } from "node:fs/promises";
import { VmpodError } from "../../common/errors.js";
import { writeFileAtomic } from "../../common/fs.js";
import { digestOf, isDigest, type Digest } from "../digest.js";
import type { StoreLayout } from "./layout.js";

export class ContentStore {
  constructor(private readonly layout: StoreLayout) {}

  async put(digest: Digest, bytes: Uint8Array): Promise<void> {
    const actual = digestOf(bytes);
    if (actual !== digest) throw new VmpodError("InvalidArgument", `blob has digest ${actual}, expected ${digest}`);
    await writeFileAtomic(this.layout.blob(digest), bytes, 0o644);
  }

  /** The blob's bytes, or undefined when absent; a blob whose bytes no longer match is deleted and reported absent. */
  async get(digest: Digest): Promise<Buffer | undefined> {
    let bytes: Buffer;
    try {
      bytes = await readFile(this.layout.blob(digest));
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    if (digestOf(bytes) !== digest) {
      await rm(this.layout.blob(digest), { force: true });
      return undefined;
    }
    return bytes;
  }

  async has(digest: Digest): Promise<boolean> {
    return stat(this.layout.blob(digest)).then(() => true, () => false);
  }

  async delete(digest: Digest): Promise<void> {
    await rm(this.layout.blob(digest), { force: true });
  }

  async list(): Promise<Digest[]> {
    const names = await readdir(this.layout.blobsDir).catch(() => [] as string[]);
    return names.map((n) => `sha256:${n}`).filter(isDigest);
  }

  /**
   * How many bytes an interrupted download of `digest` left, to resume from.
   * A partial larger than the blob is dropped.
   */
  async partial(digest: Digest, size: number): Promise<number> {
    const path = this.layout.ingest(digest);
    const have = await stat(path).then((s) => s.size, () => 0);
    if (have > size) {
      await rm(path, { force: true });
      return 0;
    }
    return have;
  }

  partialPath(digest: Digest): string {
    return this.layout.ingest(digest);
  }

  async dropPartial(digest: Digest): Promise<void> {
    await rm(this.layout.ingest(digest), { force: true });
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === "ENOENT";
}
