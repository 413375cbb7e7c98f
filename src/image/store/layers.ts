/**
 * Unpacked layers, one directory per diff id, shared by every image that
 * holds the layer, with the layer's erofs image beside it once block layers
 * have asked for it. A layer is unpacked into a fresh directory under tmp/ and
 * renamed into place only when complete and verified, so a layer directory
 * that exists is whole.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readFile, readdir, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../common/errors.js";
import { writeFileAtomic } from "../../common/fs.js";
import { isDigest, type Digest } from "../digest.js";
import { buildErofsLayer } from "../erofs-layer.js";
import { SingleFlight } from "../limit.js";
import type { UnpackResult } from "../types.js";
import type { StoreLayout } from "./layout.js";

export interface LayerInfo {
  readonly diffId: Digest;
  /** Bytes of the uncompressed tar. */
  readonly size: number;
  readonly entries: number;
  readonly unpackedAt: string;
}

export class LayerStore {
  private readonly erofsFlights = new SingleFlight<string>();

  constructor(private readonly layout: StoreLayout) {}

  async has(diffId: Digest): Promise<boolean> {
    return (await this.info(diffId)) !== undefined;
  }

  async info(diffId: Digest): Promise<LayerInfo | undefined> {
    try {
      return JSON.parse(await readFile(this.layout.layerInfo(diffId), "utf8")) as LayerInfo;
    } catch {
      return undefined;
    }
  }

  /**
   * The layer as a read-only erofs image (built the first time it is asked
   * for, once however many ask at once), for block layers.
   */
  blockImage(diffId: Digest): Promise<string> {
    return this.erofsFlights.run(diffId, async () => {
      const path = join(this.layout.layerDir(diffId), "layer.erofs");
      if (await stat(path).then(() => true, () => false)) return path;
      if (!(await this.has(diffId))) throw new VmpodError("NotFound", `layer ${diffId} is not in the store`);
      await buildErofsLayer(this.fsDir(diffId), path);
      return path;
    });
  }

  /** The directory to use as an overlay lower layer. */
  fsDir(diffId: Digest): string {
    return this.layout.layerFs(diffId);
  }

  /**
   * Runs `unpack` into an empty directory and, when it gives `diffId`, moves
   * the result into place. Anything else leaves nothing behind.
   */
  async add(diffId: Digest, unpack: (fsDir: string) => Promise<UnpackResult>): Promise<LayerInfo> {
    const work = join(this.layout.tmpDir, `layer-${randomBytes(8).toString("hex")}`);
    try {
      await mkdir(join(work, "fs"), { recursive: true, mode: 0o755 });
      const result = await unpack(join(work, "fs"));
      if (result.diffId !== diffId) {
        throw new VmpodError("InvalidArgument", `layer unpacks to diff id ${result.diffId}, the image config says ${diffId}`);
      }
      const info: LayerInfo = { diffId, size: result.uncompressedSize, entries: result.entries, unpackedAt: new Date().toISOString() };
      await writeFileAtomic(join(work, "layer.json"), JSON.stringify(info), 0o644);
      await mkdir(this.layout.layersDir, { recursive: true });
      try {
        await rename(work, this.layout.layerDir(diffId));
      } catch (err) {
        // Another pull put the same layer in place first: keep theirs.
        if (!isExists(err)) throw err;
        await rm(work, { recursive: true, force: true });
      }
      return info;
    } catch (err) {
      await rm(work, { recursive: true, force: true });
      throw err;
    }
  }

  async remove(diffId: Digest): Promise<void> {
    // Renamed away first, so that a half-removed layer is never taken for a whole one.
    const doomed = join(this.layout.tmpDir, `gone-${randomBytes(8).toString("hex")}`);
    await mkdir(this.layout.tmpDir, { recursive: true });
    try {
      await rename(this.layout.layerDir(diffId), doomed);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
      throw err;
    }
    await rm(doomed, { recursive: true, force: true });
  }

  async list(): Promise<Digest[]> {
    const names = await readdir(this.layout.layersDir).catch(() => [] as string[]);
    return names.map((n) => `sha256:${n}`).filter(isDigest);
  }
}

function isExists(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === "EEXIST" || code === "ENOTEMPTY";
}
