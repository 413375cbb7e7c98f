/**
 * An image layer as an erofs image: the layer's unpacked directory (in
 * overlayfs form: whiteouts are 0/0 character devices, opaque directories
 * carry trusted.overlay.opaque=y) made into a read-only file system image
 * that a pod VM gets as a disk, and whose guest overlay reads the whiteouts
 * and opaque markers as the host's overlay would.
 *
 * mkfs.erofs (erofs-utils 1.5) keeps owners, modes, symlinks, hard links,
 * device nodes, per-file mtimes (`--preserve-mtime`) and extended
 * attributes, trusted.* among them (test/integration/image/erofs-layer.test.ts
 * checks each). The image is written to a temporary file beside `outFile`,
 * flushed, then renamed: `outFile` is whole or absent, and nothing is left
 * behind when the build fails or is canceled.
 */
import { randomBytes } from "node:crypto";
import { open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { VmpodError, wrap } from "../common/errors.js";
import { run } from "../common/exec.js";

export type ErofsCompression = "none" | "lz4" | "lz4hc";

export interface ErofsLayerOptions {
  readonly signal?: AbortSignal;
  /** Data compression; none by default (the guest decompresses under TCG, which costs more than the I/O saved). */
  readonly compression?: ErofsCompression;
  /** The mkfs.erofs binary; looked up on PATH by default. */
  readonly mkfsPath?: string;
}

export interface ErofsLayer {
  readonly path: string;
  readonly sizeBytes: number;
}

/** mkfs.erofs's arguments for a layer directory written to `outFile`. */
export function mkfsErofsArgs(layerDir: string, outFile: string, compression: ErofsCompression = "none"): string[] {
  const args = ["--quiet", "--preserve-mtime"];
  if (compression !== "none") args.push(`-z${compression}`);
  args.push(outFile, layerDir);
  return args;
}

/** Builds the erofs image of `layerDir` at `outFile` (replacing it), atomically. */
export async function buildErofsLayer(layerDir: string, outFile: string, options: ErofsLayerOptions = {}): Promise<ErofsLayer> {
  const info = await stat(layerDir).catch((err: unknown) => {
    throw new VmpodError("NotFound", `layer directory ${layerDir}`, { cause: err });
  });
  if (!info.isDirectory()) throw new VmpodError("InvalidArgument", `layer ${layerDir} is not a directory`);
  const tmp = join(dirname(outFile), `.${basename(outFile)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    await run(options.mkfsPath ?? "mkfs.erofs", mkfsErofsArgs(layerDir, tmp, options.compression), {
      ...(options.signal ? { signal: options.signal } : {}),
      whenMissing: "install the Debian package erofs-utils",
    });
    await syncFile(tmp);
    await rename(tmp, outFile);
    await syncFile(dirname(outFile));
  } catch (err) {
    await rm(tmp, { force: true });
    if (options.signal?.aborted) throw new VmpodError("Canceled", `build erofs layer ${outFile}: canceled`, { cause: err });
    throw wrap(`build erofs layer ${outFile} from ${layerDir}`, err);
  }
  return { path: outFile, sizeBytes: (await stat(outFile)).size };
}

async function syncFile(path: string): Promise<void> {
  const handle = await open(path, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
