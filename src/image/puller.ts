/**
 * One image pull: the reference resolved to a manifest for this platform,
 * its config fetched and verified, every layer not yet held downloaded (in
 * parallel, bounded) and unpacked as it streams, verified against both its
 * descriptor's digest and the config's diff id. A layer download that fails
 * midway keeps its bytes so that the next pull resumes with a range request;
 * a layer that fails verification keeps nothing.
 */
import { once } from "node:events";
import { createReadStream, createWriteStream } from "node:fs";
import { Readable } from "node:stream";
import { finished, pipeline } from "node:stream/promises";
import { VmpodError, wrap } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { DigestingStream, type Digest } from "./digest.js";
import type { Limiter, SingleFlight } from "./limit.js";
import { layerCompression, parseImageConfig, parseManifest, parseManifestOrIndex, selectPlatform, type ImageManifest } from "./manifest.js";
import type { ImageObserver } from "./observer.js";
import { formatReference, repoDigest, repoTag } from "./reference.js";
import type { ContentStore } from "./store/content.js";
import type { LayerInfo, LayerStore } from "./store/layers.js";
import type { Descriptor, ImageRecord, ImageReference, LayerUnpacker, Platform, Registry, RegistryCredentials } from "./types.js";

/** Manifests and configs are small; anything larger is refused. */
const MAX_CONFIG_BYTES = 8 << 20;
export const PROGRESS_EVERY_MS = 5_000;
/** Bytes of a layer download held in memory on their way to the partial file. */
const INGEST_BUFFER = 4 << 20;
const INGEST_BATCH = 1 << 20;

export interface PullContext {
  readonly registry: Registry;
  readonly unpacker: LayerUnpacker;
  readonly content: ContentStore;
  readonly layers: LayerStore;
  readonly platform: string;
  /** Bounds layer downloads across every pull. */
  readonly downloads: Limiter;
  /** One download per layer, whoever asks. */
  readonly layerFlights: SingleFlight<LayerInfo>;
  readonly logger: Logger;
  /** How often a pull under way logs its progress. */
  readonly progressEveryMs: number;
  /** Told of every byte received from the registry. */
  readonly observer: ImageObserver;
}

export interface PullRequest {
  readonly ref: ImageReference;
  readonly credentials?: RegistryCredentials;
  readonly signal?: AbortSignal;
}

/** What a pull found; the service merges it into the image record. */
export interface Pulled {
  readonly id: Digest;
  readonly manifestDigest: Digest;
  readonly repoTag?: string;
  readonly repoDigest: string;
  readonly layers: readonly Digest[];
  readonly size: number;
  readonly platform: Platform;
  readonly runtime: ImageRecord["config"];
  /** Blobs to keep for this image: index (if any), manifest, config. */
  readonly blobs: readonly { readonly digest: Digest; readonly bytes: Buffer }[];
}

export async function pullImage(ctx: PullContext, request: PullRequest): Promise<Pulled> {
  const { ref, signal } = request;
  const options = { ...(request.credentials ? { credentials: request.credentials } : {}), ...(signal ? { signal } : {}) };
  const name = formatReference(ref);
  const top = await ctx.registry.getManifest(ref, options).catch((err: unknown) => {
    throw wrap(`fetch manifest of ${name}`, err);
  });
  ctx.observer.pullBytes(top.bytes.length);
  const blobs: { digest: Digest; bytes: Buffer }[] = [{ digest: top.digest, bytes: top.bytes }];
  let manifestFetched = top;
  const parsed = parseManifestOrIndex(top.bytes, top.mediaType);
  let manifest: ImageManifest;
  if (parsed.kind === "index") {
    const chosen = selectPlatform(parsed.index, ctx.platform);
    manifestFetched = await ctx.registry.getManifestByDigest(ref, chosen.digest, options).catch((err: unknown) => {
      throw wrap(`fetch manifest ${chosen.digest} of ${name}`, err);
    });
    ctx.observer.pullBytes(manifestFetched.bytes.length);
    blobs.push({ digest: manifestFetched.digest, bytes: manifestFetched.bytes });
    manifest = parseManifest(manifestFetched.bytes, manifestFetched.mediaType);
  } else {
    manifest = parsed.manifest;
  }
  const configBytes = await fetchSmallBlob(ctx, ref, manifest.config, options).catch((err: unknown) => {
    throw wrap(`fetch config of ${name}`, err);
  });
  blobs.push({ digest: manifest.config.digest, bytes: configBytes });
  const config = parseImageConfig(configBytes);
  if (config.diffIds.length !== manifest.layers.length) {
    throw new VmpodError("InvalidArgument", `${name}: the manifest has ${manifest.layers.length} layers, the config ${config.diffIds.length} diff ids`);
  }

  const progress = new Progress(ctx.logger, name, manifest.layers, ctx.progressEveryMs);
  try {
    await Promise.all(
      manifest.layers.map(async (layer, i) => {
        const diffId = config.diffIds[i] as Digest;
        if (await ctx.layers.has(diffId)) {
          progress.done(layer);
          return;
        }
        await ctx.layerFlights.run(diffId, () => ctx.downloads.run(() => fetchLayer(ctx, ref, layer, diffId, progress, options)));
        progress.done(layer);
      }),
    );
  } catch (err) {
    throw wrap(`pull ${name}`, err);
  } finally {
    progress.stop();
  }
  const tag = ref.digest ? undefined : repoTag(ref);
  return {
    id: manifest.config.digest,
    manifestDigest: manifestFetched.digest,
    ...(tag === undefined ? {} : { repoTag: tag }),
    repoDigest: repoDigest(ref, top.digest),
    layers: config.diffIds,
    size: manifest.config.size + manifestFetched.bytes.length + manifest.layers.reduce((n, l) => n + l.size, 0),
    platform: config.platform,
    runtime: config.runtime,
    blobs,
  };
}

async function fetchSmallBlob(ctx: PullContext, ref: ImageReference, desc: Descriptor, options: { credentials?: RegistryCredentials; signal?: AbortSignal }): Promise<Buffer> {
  const held = await ctx.content.get(desc.digest);
  if (held) return held;
  if (desc.size > MAX_CONFIG_BYTES) throw new VmpodError("InvalidArgument", `config blob ${desc.digest} is ${desc.size} bytes, more than the ${MAX_CONFIG_BYTES} allowed`);
  const download = await ctx.registry.openBlob(ref, desc, options);
  const verify = new DigestingStream({ digest: desc.digest, size: desc.size, what: `config ${desc.digest}` });
  const chunks: Buffer[] = [];
  download.body.on("error", (err) => verify.destroy(err));
  for await (const chunk of download.body.pipe(verify)) {
    chunks.push(chunk as Buffer);
    ctx.observer.pullBytes((chunk as Buffer).length);
  }
  verify.check();
  return Buffer.concat(chunks);
}

async function fetchLayer(
  ctx: PullContext,
  ref: ImageReference,
  layer: Descriptor,
  diffId: Digest,
  progress: Progress,
  options: { credentials?: RegistryCredentials; signal?: AbortSignal },
): Promise<LayerInfo> {
  const compression = layerCompression(layer.mediaType);
  const partialPath = ctx.content.partialPath(layer.digest);
  let have = await ctx.content.partial(layer.digest, layer.size);
  const download = await ctx.registry.openBlob(ref, layer, { ...options, offset: have });
  if (download.offset !== have) {
    ctx.logger.debug("registry ignored the range; downloading the layer from the start", { layer: layer.digest, had: have });
    have = 0;
  } else if (have > 0) {
    ctx.logger.info("resuming layer download", { layer: layer.digest, offset: have, size: layer.size });
  }
  progress.add(layer, have);
  // The whole blob (what an earlier attempt kept, then the rest from the
  // network, appended to the partial file as it arrives) flows through the
  // digest check into the unpacker.
  async function* blob(): AsyncGenerator<Buffer> {
    if (have > 0) yield* createReadStream(partialPath, { end: have - 1 }) as AsyncIterable<Buffer>;
    const file = createWriteStream(partialPath, { flags: have > 0 ? "a" : "w", mode: 0o600, highWaterMark: INGEST_BUFFER });
    const fileFailed = new Promise<never>((_, reject) => file.once("error", reject));
    fileFailed.catch(() => undefined);
    try {
      // Written behind the unpack in batches (one system call per
      // INGEST_BATCH bytes, not per network read), waiting only when the
      // disk falls behind.
      let batch: Buffer[] = [];
      let batched = 0;
      const flush = async () => {
        if (batched === 0) return;
        const ok = file.write(batch.length === 1 ? batch[0] : Buffer.concat(batch, batched));
        batch = [];
        batched = 0;
        if (!ok) await Promise.race([once(file, "drain"), fileFailed]);
      };
      try {
        for await (const chunk of download.body as AsyncIterable<Buffer>) {
          batch.push(chunk);
          batched += chunk.length;
          if (batched >= INGEST_BATCH) await flush();
          progress.add(layer, chunk.length);
          ctx.observer.pullBytes(chunk.length);
          yield chunk;
        }
      } finally {
        await flush();
      }
    } finally {
      await new Promise<void>((resolve) => file.end(resolve));
    }
  }
  const verified = new DigestingStream({ digest: layer.digest, size: layer.size, what: `layer ${layer.digest}` });
  const source = Readable.from(blob());
  // Failures of either side reach the unpacker, which reads `verified`.
  pipeline(source, verified).catch(() => undefined);
  try {
    const info = await ctx.layers.add(diffId, async (fsDir) => {
      const result = await ctx.unpacker.unpack(verified, compression, fsDir, options.signal ? { signal: options.signal } : {});
      // The tar may end before the blob does: the rest must still be read and verified.
      if (!verified.readableEnded) verified.resume();
      await finished(verified);
      verified.check();
      return result;
    });
    await ctx.content.dropPartial(layer.digest);
    return info;
  } catch (err) {
    source.destroy();
    verified.destroy();
    download.body.destroy();
    // Bytes that do not verify are worth nothing; an interrupted download is kept to resume.
    if (err instanceof VmpodError && err.kind === "InvalidArgument") await ctx.content.dropPartial(layer.digest);
    throw wrap(`layer ${layer.digest}`, err);
  }
}

/** Logs a long pull's progress every few seconds. */
class Progress {
  private readonly bytes = new Map<Digest, number>();
  private readonly total: number;
  private readonly timer: NodeJS.Timeout;
  private readonly started = performance.now();

  constructor(
    private readonly logger: Logger,
    private readonly image: string,
    private readonly layers: readonly Descriptor[],
    everyMs: number,
  ) {
    this.total = layers.reduce((n, l) => n + l.size, 0);
    this.timer = setInterval(() => this.log(), everyMs);
    this.timer.unref();
  }

  add(layer: Descriptor, n: number): void {
    this.bytes.set(layer.digest, (this.bytes.get(layer.digest) ?? 0) + n);
  }

  done(layer: Descriptor): void {
    this.bytes.set(layer.digest, layer.size);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private log(): void {
    const done = [...this.bytes.values()].reduce((a, b) => a + b, 0);
    const finishedLayers = this.layers.filter((l) => this.bytes.get(l.digest) === l.size).length;
    this.logger.info("pulling image", {
      image: this.image,
      bytes: done,
      totalBytes: this.total,
      layers: `${finishedLayers}/${this.layers.length}`,
      seconds: Math.round((performance.now() - this.started) / 1000),
    });
  }
}

