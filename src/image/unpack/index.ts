/**
 * The layer unpacker: a layer's stream, decompressed, hashed (its diff id is
 * the digest of the uncompressed tar), read as tar and written into the
 * caller's empty directory in overlayfs form by the applier. The caller
 * renames the directory into place on success and removes it on failure.
 */
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { VmpodError, wrap } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import { DigestingStream } from "../digest.js";
import type { Compression, LayerUnpacker, UnpackResult } from "../types.js";
import { LayerApplier } from "./apply.js";
import { gunzip, ZstdDecompressor } from "./decompress.js";
import { readTar } from "./tar.js";

export interface TarLayerUnpackerOptions {
  readonly logger: Logger;
  /** The zstd binary ("zstd", found on PATH, unless told). */
  readonly zstdCommand?: string;
}

export class TarLayerUnpacker implements LayerUnpacker {
  constructor(private readonly options: TarLayerUnpackerOptions) {}

  async unpack(source: Readable, compression: Compression, targetDir: string, options: { readonly signal?: AbortSignal } = {}): Promise<UnpackResult> {
    const signal = options.signal;
    const canceled = () => new VmpodError("Canceled", "unpack layer: canceled", { cause: signal?.reason });
    if (signal?.aborted) {
      source.destroy();
      throw canceled();
    }
    // A failure is blamed on the stage where it first appeared: a download
    // cut off is the source's and passed on as it is, bad gzip data is the
    // layer's. Every stage sees the same error once the pipeline tears down.
    let firstError: { stage: "source" | "other"; err: unknown } | undefined;
    source.on("error", (err) => (firstError ??= { stage: "source", err }));
    const applier = new LayerApplier(targetDir, this.options.logger);
    const digester = new DigestingStream();
    let applying: Promise<void> | undefined;
    const consume = (chunks: AsyncIterable<Buffer>): Promise<void> => {
      applying = (async () => {
        for await (const entry of readTar(chunks)) {
          signal?.throwIfAborted();
          await applier.apply(entry);
        }
      })();
      return applying;
    };
    const pipelineOptions = signal ? { signal } : {};
    let zstd: ZstdDecompressor | undefined;
    let gzip: ReturnType<typeof gunzip> | undefined;
    try {
      switch (compression) {
        case "gzip":
          gzip = gunzip();
          gzip.stream.on("error", (err) => (firstError ??= { stage: "other", err }));
          await pipeline(source, gzip.stream, digester, consume, pipelineOptions);
          break;
        case "zstd":
          zstd = new ZstdDecompressor(this.options.zstdCommand);
          await pipeline(source, zstd, digester, consume, pipelineOptions);
          break;
        case "none":
          await pipeline(source, digester, consume, pipelineOptions);
          break;
        default:
          source.destroy();
          throw new VmpodError("InvalidArgument", `unknown layer compression ${JSON.stringify(compression)}`);
      }
      signal?.throwIfAborted();
      await applier.finish();
    } catch (err) {
      if (signal?.aborted) throw canceled();
      if (firstError?.stage === "source" && firstError.err === err) throw wrap("unpack layer: read layer", err);
      if (gzip?.isOwnError(err)) throw new VmpodError("InvalidArgument", "unpack layer: gzip stream is corrupt", { cause: err });
      throw wrap("unpack layer", err);
    } finally {
      // Nothing may touch targetDir, and no zstd may run, once this returns.
      await applying?.catch(() => {});
      await zstd?.exited;
    }
    return { diffId: digester.digest(), uncompressedSize: digester.size, entries: applier.entries };
  }
}
