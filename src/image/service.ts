/**
 * The image service: pulls into the store, answers what is held, removes,
 * collects what nothing uses, and hands containers their root filesystem
 * layers. It is what the CRI ImageService and the sandbox layer call.
 *
 * Records, layers and writable layers are all on disk, so a restarted
 * daemon finds its images and which containers use them.
 */
import { mkdir, readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError, messageOf } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import { isSafeId } from "../common/ids.js";
import type { Logger } from "../common/log.js";
import type { ImageConfig } from "../config/types.js";
import { isDigest, type Digest } from "./digest.js";
import { Limiter, SingleFlight } from "./limit.js";
import { quietImageObserver, type ImageObserver } from "./observer.js";
import { PROGRESS_EVERY_MS, pullImage, type PullContext } from "./puller.js";
import { formatReference, parseReference, repoDigest, repoTag } from "./reference.js";
import { ContentStore } from "./store/content.js";
import { ImageIndex } from "./store/images.js";
import { LayerStore, type LayerInfo } from "./store/layers.js";
import { storeLayout, type StoreLayout } from "./store/layout.js";
import { treeUsage } from "./store/usage.js";
import type {
  FilesystemUsage,
  ImageDescription,
  ImageFilter,
  ImageRecord,
  ImageReference,
  ImageService,
  LayerUnpacker,
  PullOptions,
  Registry,
  RootfsLayers,
} from "./types.js";

export interface ImageStoreOptions {
  readonly config: ImageConfig;
  readonly registry: Registry;
  readonly unpacker: LayerUnpacker;
  readonly logger: Logger;
  /** How often a pull under way logs its progress (5 s unless told). */
  readonly progressEveryMs?: number;
  /** Told of each pull and the bytes it received (metrics); nobody unless told. */
  readonly observer?: ImageObserver;
}

export class LocalImageService implements ImageService {
  private readonly layout: StoreLayout;
  private readonly content: ContentStore;
  private readonly layers: LayerStore;
  private readonly index: ImageIndex;
  private readonly pulls = new SingleFlight<ImageRecord>();
  private readonly pullContext: PullContext;
  /** holder (container id) → image id */
  private readonly users = new Map<string, Digest>();
  /** Serializes changes to records, users and garbage collection. */
  private changing: Promise<unknown> = Promise.resolve();

  private constructor(private readonly options: ImageStoreOptions) {
    this.layout = storeLayout(options.config.root);
    this.content = new ContentStore(this.layout);
    this.layers = new LayerStore(this.layout);
    this.index = new ImageIndex(this.layout, options.logger);
    this.pullContext = {
      registry: options.registry,
      unpacker: options.unpacker,
      content: this.content,
      layers: this.layers,
      platform: options.config.platform,
      downloads: new Limiter(options.config.maxConcurrentDownloads),
      layerFlights: new SingleFlight<LayerInfo>(),
      logger: options.logger,
      progressEveryMs: options.progressEveryMs ?? PROGRESS_EVERY_MS,
      observer: options.observer ?? quietImageObserver,
    };
  }

  /** Opens (creating) the store: clears unfinished work, reads records and writable layers. */
  static async open(options: ImageStoreOptions): Promise<LocalImageService> {
    const service = new LocalImageService(options);
    const l = service.layout;
    for (const dir of [l.blobsDir, l.ingestDir, l.layersDir, l.imagesDir, l.snapshotsDir]) await mkdir(dir, { recursive: true, mode: 0o700 });
    await rm(l.tmpDir, { recursive: true, force: true });
    await mkdir(l.tmpDir, { mode: 0o700 });
    await service.index.load();
    await service.loadUsers();
    return service;
  }

  async pull(reference: string, options: PullOptions = {}): Promise<ImageRecord> {
    const ref = parseReference(reference);
    const key = formatReference(ref);
    // Callers with other credentials or a pin do not share a pull they could not make themselves.
    const flightKey = `${key}\u0000${JSON.stringify(options.credentials ?? {})}\u0000${options.pinned === true}`;
    return this.pulls.run(flightKey, () => this.observedPull(ref, options));
  }

  /** One pull (not each caller sharing it), told to the observer. */
  private async observedPull(ref: ImageReference, options: PullOptions): Promise<ImageRecord> {
    const started = performance.now();
    const ended = (ok: boolean) => this.pullContext.observer.pullEnded((performance.now() - started) / 1000, ok);
    try {
      const record = await this.doPull(ref, options, started);
      ended(true);
      return record;
    } catch (err) {
      ended(false);
      throw err;
    }
  }

  private async doPull(ref: ImageReference, options: PullOptions, started: number): Promise<ImageRecord> {
    const pulled = await pullImage(this.pullContext, {
      ref,
      ...(options.credentials ? { credentials: options.credentials } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
    return this.change(async () => {
      for (const blob of pulled.blobs) if (!(await this.content.has(blob.digest))) await this.content.put(blob.digest, blob.bytes);
      const existing = this.index.get(pulled.id);
      const record: ImageRecord = {
        id: pulled.id,
        repoTags: union(existing?.repoTags, pulled.repoTag === undefined ? [] : [pulled.repoTag]),
        repoDigests: union(existing?.repoDigests, [pulled.repoDigest]),
        manifestDigest: pulled.manifestDigest,
        layers: pulled.layers,
        size: pulled.size,
        platform: pulled.platform,
        config: pulled.runtime,
        pinned: (existing?.pinned ?? false) || options.pinned === true,
        pulledAt: new Date().toISOString(),
      };
      await this.index.put(record);
      // A tag that moved here may have left its old image with no name and no user.
      await this.collect();
      this.options.logger.info("pulled image", { image: formatReference(ref), id: record.id, ms: Math.round(performance.now() - started) });
      return record;
    });
  }

  find(reference: string): ImageRecord | undefined {
    return this.index.find(storedName(reference), reference);
  }

  get(id: Digest): ImageRecord | undefined {
    return this.index.get(id);
  }

  list(filter: ImageFilter = {}): ImageRecord[] {
    if (filter.image === undefined || filter.image === "") return this.index.all();
    const found = this.find(filter.image);
    return found ? [found] : [];
  }

  async remove(reference: string): Promise<void> {
    await this.change(async () => {
      const record = this.find(reference);
      if (!record) return; // already gone: removal is idempotent
      const canonical = storedName(reference);
      const byName = canonical !== undefined && (record.repoTags.includes(canonical) || record.repoDigests.includes(canonical));
      const rest = byName ? { tags: record.repoTags.filter((t) => t !== canonical), digests: record.repoDigests.filter((d) => d !== canonical) } : undefined;
      if (rest && rest.tags.length > 0) {
        // Other tags still name it: only this name goes.
        await this.index.put({ ...record, repoTags: rest.tags, repoDigests: rest.digests });
        return;
      }
      const users = this.holders(record.id);
      if (users.length > 0) {
        throw new VmpodError("FailedPrecondition", `image ${reference} (${record.id}) is in use by container${users.length > 1 ? "s" : ""} ${users.join(", ")}`);
      }
      await this.index.delete(record.id);
      await this.collect();
      this.options.logger.info("removed image", { image: reference, id: record.id });
    });
  }

  async describe(imageId: Digest): Promise<ImageDescription> {
    const record = this.index.get(imageId);
    if (!record) throw new VmpodError("NotFound", `image ${imageId} not found`);
    const read = async (d: Digest): Promise<unknown> => {
      const bytes = await this.content.get(d);
      return bytes ? (JSON.parse(bytes.toString("utf8")) as unknown) : undefined;
    };
    return { record, manifest: await read(record.manifestDigest), config: await read(record.id) };
  }

  async fsInfo(): Promise<{ images: FilesystemUsage; containers: FilesystemUsage }> {
    const [blobs, ingest, layers, images, snapshots] = await Promise.all([
      treeUsage(join(this.layout.root, "blobs")),
      treeUsage(this.layout.ingestDir),
      treeUsage(this.layout.layersDir),
      treeUsage(this.layout.imagesDir),
      treeUsage(this.layout.snapshotsDir),
    ]);
    const parts = [blobs, ingest, layers, images];
    return {
      images: {
        mountpoint: this.layout.root,
        usedBytes: parts.reduce((n, p) => n + p.usedBytes, 0),
        inodesUsed: parts.reduce((n, p) => n + p.inodesUsed, 0),
        timestamp: Date.now(),
      },
      containers: snapshots,
    };
  }

  async use(imageId: Digest, holder: string, options: { readonly blockImages?: boolean } = {}): Promise<RootfsLayers> {
    if (!isSafeId(holder)) throw new VmpodError("InvalidArgument", `container id ${JSON.stringify(holder)} is not a safe name`);
    const rootfs = await this.change(async (): Promise<RootfsLayers> => {
      const record = this.index.get(imageId);
      if (!record) throw new VmpodError("NotFound", `image ${imageId} not found`);
      const held = this.users.get(holder);
      if (held !== undefined && held !== imageId) throw new VmpodError("AlreadyExists", `container ${holder} already uses image ${held}`);
      for (const diffId of record.layers) {
        if (!(await this.layers.has(diffId))) throw new VmpodError("FailedPrecondition", `layer ${diffId} of image ${imageId} is missing from the store; pull the image again`);
      }
      const dir = this.layout.snapshot(holder);
      if (held === undefined) {
        await mkdir(join(dir, "upper"), { recursive: true, mode: 0o755 });
        await mkdir(join(dir, "work"), { recursive: true, mode: 0o700 });
        await writeFileAtomic(join(dir, "image"), imageId, 0o600);
        this.users.set(holder, imageId);
      }
      return {
        imageId,
        layers: record.layers.map((diffId) => ({ diffId, dir: this.layers.fsDir(diffId) })),
        upperDir: join(dir, "upper"),
        workDir: join(dir, "work"),
      };
    });
    if (!options.blockImages) return rootfs;
    // Built outside the queue of changes: mkfs.erofs of a large layer must not hold up pulls and
    // removals. The image is in use from here on, so its layers stay.
    const layers = [];
    for (const layer of rootfs.layers) layers.push({ ...layer, blockImage: await this.layers.blockImage(layer.diffId) });
    return { ...rootfs, layers };
  }

  async writableLayerUsage(holder: string): Promise<FilesystemUsage | undefined> {
    if (!isSafeId(holder) || !this.users.has(holder)) return undefined;
    return treeUsage(join(this.layout.snapshot(holder), "upper"));
  }

  async release(holder: string): Promise<void> {
    if (!isSafeId(holder)) return;
    await this.change(async () => {
      await rm(this.layout.snapshot(holder), { recursive: true, force: true });
      this.users.delete(holder);
    });
  }

  holders(imageId: Digest): string[] {
    return [...this.users].filter(([, id]) => id === imageId).map(([holder]) => holder);
  }

  /**
   * Pulls the configured sandbox image, pinned, unless it is held already.
   * Only needed where a pause process runs; a VM pod needs none.
   */
  async ensureSandboxImage(options: Omit<PullOptions, "pinned"> = {}): Promise<ImageRecord> {
    const held = this.find(this.options.config.sandboxImage);
    if (held?.pinned) return held;
    return this.pull(this.options.config.sandboxImage, { ...options, pinned: true });
  }

  /** Deletes layers and blobs no image refers to (layers being pulled are left alone). */
  private async collect(): Promise<void> {
    const liveLayers = new Set<Digest>();
    const liveBlobs = new Set<Digest>();
    for (const record of this.index.all()) {
      for (const l of record.layers) liveLayers.add(l);
      liveBlobs.add(record.id);
      liveBlobs.add(record.manifestDigest);
      for (const d of record.repoDigests) {
        const digest = d.slice(d.lastIndexOf("@") + 1);
        if (isDigest(digest)) liveBlobs.add(digest);
      }
    }
    for (const diffId of await this.layers.list()) {
      if (liveLayers.has(diffId) || this.pullContext.layerFlights.has(diffId)) continue;
      await this.layers.remove(diffId).catch((err: unknown) => this.options.logger.warn("could not remove unused layer", { layer: diffId, err: messageOf(err) }));
    }
    // Blobs of a pull under way are written only once it ends, inside this same queue.
    for (const digest of await this.content.list()) {
      if (!liveBlobs.has(digest)) await this.content.delete(digest);
    }
  }

  private async loadUsers(): Promise<void> {
    const holders = await readdir(this.layout.snapshotsDir).catch(() => [] as string[]);
    for (const holder of holders) {
      const id = await readFile(join(this.layout.snapshot(holder), "image"), "utf8").catch(() => "");
      if (isSafeId(holder) && isDigest(id) && this.index.get(id)) this.users.set(holder, id);
      else {
        this.options.logger.warn("removing a writable layer with no image", { container: holder });
        await rm(this.layout.snapshot(holder), { recursive: true, force: true });
      }
    }
  }

  private change<T>(task: () => Promise<T>): Promise<T> {
    const next = this.changing.then(task, task);
    this.changing = next.catch(() => undefined);
    return next;
  }
}

function union(a: readonly string[] | undefined, b: readonly string[]): string[] {
  return [...new Set([...(a ?? []), ...b])];
}

/**
 * The name a reference is stored under: its repo digest when it has a digest
 * (a tag beside a digest does not count), else its repo tag; undefined for
 * what is not a reference (an id).
 */
function storedName(reference: string): string | undefined {
  let ref: ImageReference;
  try {
    ref = parseReference(reference);
  } catch {
    return undefined;
  }
  return ref.digest ? repoDigest(ref, ref.digest) : repoTag(ref);
}
