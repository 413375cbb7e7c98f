/**
 * The image service over a fake registry and a fake unpacker (the
 * interfaces it is built on): pull, share, verify, resume, name, remove,
 * collect, survive a restart. The real registry and unpacker are in the
 * integration tests.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import { createLogger, silentLogger } from "../../../src/common/log.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { digestOf, type Digest } from "../../../src/image/digest.js";
import { LocalImageService } from "../../../src/image/service.js";
import type { BlobDownload, Descriptor, FetchedManifest, ImageReference, LayerUnpacker, Registry, UnpackResult } from "../../../src/image/types.js";

const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";

interface Image {
  manifest: Buffer;
  manifestDigest: Digest;
  configDigest: Digest;
  layers: Buffer[];
}

/** An in-memory registry: repositories of tags → manifests, and blobs. */
class FakeRegistry implements Registry {
  readonly tags = new Map<string, Digest>();
  readonly manifests = new Map<Digest, { mediaType: string; bytes: Buffer }>();
  readonly blobs = new Map<Digest, Buffer>();
  readonly blobRequests: { digest: Digest; offset: number }[] = [];
  /** Digest → bytes after which the next download of it breaks off. */
  readonly breakAfter = new Map<Digest, number>();
  /** Digest → bytes served instead of the real ones. */
  readonly corrupt = new Map<Digest, Buffer>();
  /** Hold layer downloads until released. */
  gate: Promise<void> | undefined;

  image(name: string, layerTexts: string[]): Image {
    const layers = layerTexts.map((t) => Buffer.from(t));
    const config = Buffer.from(
      JSON.stringify({
        architecture: "amd64",
        os: "linux",
        config: { Env: ["PATH=/bin"], Cmd: ["/bin/sh"], User: "1000" },
        rootfs: { type: "layers", diff_ids: layers.map((l) => digestOf(l)) },
      }),
    );
    const configDigest = digestOf(config);
    this.blobs.set(configDigest, config);
    for (const l of layers) this.blobs.set(digestOf(l), l);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: OCI_CONFIG, digest: configDigest, size: config.length },
        layers: layers.map((l) => ({ mediaType: OCI_LAYER, digest: digestOf(l), size: l.length })),
      }),
    );
    const manifestDigest = digestOf(manifest);
    this.manifests.set(manifestDigest, { mediaType: OCI_MANIFEST, bytes: manifest });
    this.tags.set(name, manifestDigest);
    return { manifest, manifestDigest, configDigest, layers };
  }

  index(name: string, entries: { image: Image; architecture: string }[]): Digest {
    const bytes = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: entries.map((e) => ({ mediaType: OCI_MANIFEST, digest: e.image.manifestDigest, size: e.image.manifest.length, platform: { os: "linux", architecture: e.architecture } })),
      }),
    );
    const digest = digestOf(bytes);
    this.manifests.set(digest, { mediaType: OCI_INDEX, bytes });
    this.tags.set(name, digest);
    return digest;
  }

  async getManifest(ref: ImageReference): Promise<FetchedManifest> {
    const digest = ref.digest ?? this.tags.get(`${ref.repository}:${ref.tag ?? "latest"}`);
    if (digest === undefined) throw new VmpodError("NotFound", `manifest ${ref.repository}:${ref.tag ?? ""} unknown`);
    return this.getManifestByDigest(ref, digest);
  }

  async getManifestByDigest(_ref: ImageReference, digest: Digest): Promise<FetchedManifest> {
    const m = this.manifests.get(digest);
    if (!m) throw new VmpodError("NotFound", `manifest ${digest} unknown`);
    return { mediaType: m.mediaType, digest, bytes: m.bytes, endpoint: "fake://registry" };
  }

  async openBlob(_ref: ImageReference, descriptor: Descriptor, options: { offset?: number } = {}): Promise<BlobDownload> {
    const offset = options.offset ?? 0;
    this.blobRequests.push({ digest: descriptor.digest, offset });
    if (this.gate && descriptor.mediaType === OCI_LAYER) await this.gate;
    const bytes = this.corrupt.get(descriptor.digest) ?? this.blobs.get(descriptor.digest);
    if (!bytes) throw new VmpodError("NotFound", `blob ${descriptor.digest} unknown`);
    const cut = this.breakAfter.get(descriptor.digest);
    this.breakAfter.delete(descriptor.digest);
    const rest = bytes.subarray(offset);
    async function* body(): AsyncGenerator<Buffer> {
      if (cut === undefined) {
        yield rest;
        return;
      }
      yield rest.subarray(0, cut);
      throw new VmpodError("Unavailable", "connection reset");
    }
    return { body: Readable.from(body()), offset };
  }

  async close(): Promise<void> {}

  layerRequests(image: Image): number {
    const digests = new Set(image.layers.map((l) => digestOf(l)));
    return this.blobRequests.filter((r) => digests.has(r.digest)).length;
  }
}

/** Writes the (uncompressed) layer's bytes to `content` in the target. */
class FakeUnpacker implements LayerUnpacker {
  async unpack(source: Readable, _compression: string, targetDir: string): Promise<UnpackResult> {
    const chunks: Buffer[] = [];
    for await (const c of source) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    await writeFile(join(targetDir, "content"), bytes);
    return { diffId: digestOf(bytes), uncompressedSize: bytes.length, entries: 1 };
  }
}

describe("image service (fake registry, fake unpacker)", () => {
  let root: string;
  let registry: FakeRegistry;

  const open = () =>
    LocalImageService.open({
      config: { ...defaultConfig("/nonexistent").image, root },
      registry,
      unpacker: new FakeUnpacker(),
      logger: silentLogger,
    });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-image-unit-"));
    registry = new FakeRegistry();
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("pulls by tag: a record named by tag and digest, its layers unpacked, its blobs kept", async () => {
    const img = registry.image("library/app:1", ["layer one", "layer two"]);
    const service = await open();
    const record = await service.pull("app:1");
    assert.equal(record.id, img.configDigest);
    assert.deepEqual(record.repoTags, ["docker.io/library/app:1"]);
    assert.deepEqual(record.repoDigests, [`docker.io/library/app@${img.manifestDigest}`]);
    assert.equal(record.config.user, "1000");
    assert.deepEqual(record.config.cmd, ["/bin/sh"]);
    const rootfs = await service.use(record.id, "c1");
    assert.equal(rootfs.layers.length, 2);
    assert.equal(await readFile(join(rootfs.layers[1]?.dir ?? "", "content"), "utf8"), "layer two");
    assert.deepEqual((await readdir(join(root, "blobs", "sha256"))).sort(), [img.configDigest.slice(7), img.manifestDigest.slice(7)].sort());
    assert.deepEqual(await readdir(join(root, "ingest")), [], "no partial download is left");
    assert.equal(service.find("docker.io/library/app:1")?.id, record.id);
    assert.equal(service.find(`app@${img.manifestDigest}`)?.id, record.id);
    assert.equal(service.find(record.id)?.id, record.id);
    assert.equal(service.find(record.id.slice(7, 19))?.id, record.id, "a unique id prefix finds it");
  });

  it("chooses the configured platform from an index", async () => {
    const amd = registry.image("library/multi:amd", ["amd64 layer"]);
    const arm = registry.image("library/multi:arm", ["arm64 layer"]);
    const indexDigest = registry.index("library/multi:latest", [
      { image: arm, architecture: "arm64" },
      { image: amd, architecture: "amd64" },
    ]);
    const service = await open();
    const record = await service.pull("multi");
    assert.equal(record.id, amd.configDigest);
    assert.equal(record.manifestDigest, amd.manifestDigest);
    assert.deepEqual(record.repoDigests, [`docker.io/library/multi@${indexDigest}`]);
  });

  it("downloads a layer once when two pulls of the same image run at once", async () => {
    const img = registry.image("library/app:1", ["shared layer"]);
    let release = () => {};
    registry.gate = new Promise((r) => (release = r));
    const service = await open();
    const both = Promise.all([service.pull("app:1"), service.pull("docker.io/library/app:1")]);
    await new Promise((r) => setTimeout(r, 50));
    release();
    const [a, b] = await both;
    assert.equal(a.id, b.id);
    assert.equal(registry.layerRequests(img), 1);
  });

  it("shares layers between images and downloads only what is missing", async () => {
    registry.image("library/a:1", ["base", "a top"]);
    const b = registry.image("library/b:1", ["base", "b top"]);
    const service = await open();
    await service.pull("a:1");
    await service.pull("b:1");
    assert.equal(registry.blobRequests.filter((r) => r.digest === digestOf("base")).length, 1);
    assert.equal(registry.layerRequests(b), 2, "b's own layer and the shared base (once, by a)");
    assert.equal((await readdir(join(root, "layers"))).length, 3);
  });

  it("fails a pull whose layer does not match its digest, keeping nothing of it", async () => {
    const img = registry.image("library/bad:1", ["good bytes"]);
    const layerDigest = digestOf(img.layers[0] ?? "");
    registry.corrupt.set(layerDigest, Buffer.from("evil bytes"));
    const service = await open();
    await assert.rejects(service.pull("bad:1"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument" && /digest/.test(e.message));
    assert.deepEqual(await readdir(join(root, "layers")), []);
    assert.deepEqual(await readdir(join(root, "ingest")), []);
    assert.deepEqual(await readdir(join(root, "images")), []);
    assert.deepEqual(await readdir(join(root, "tmp")), []);
    assert.equal(service.list().length, 0);
  });

  it("resumes an interrupted layer download from where it stopped", async () => {
    const img = registry.image("library/big:1", ["0123456789".repeat(100)]);
    const layerDigest = digestOf(img.layers[0] ?? "");
    registry.breakAfter.set(layerDigest, 300);
    const service = await open();
    await assert.rejects(service.pull("big:1"), (e: unknown) => e instanceof VmpodError && e.kind === "Unavailable");
    assert.equal((await stat(join(root, "ingest", `${layerDigest.slice(7)}.partial`))).size, 300);
    const record = await service.pull("big:1");
    assert.deepEqual(registry.blobRequests.filter((r) => r.digest === layerDigest).map((r) => r.offset), [0, 300]);
    const rootfs = await service.use(record.id, "c1");
    assert.equal(await readFile(join(rootfs.layers[0]?.dir ?? "", "content"), "utf8"), "0123456789".repeat(100));
    assert.deepEqual(await readdir(join(root, "ingest")), []);
  });

  it("moves a tag to the image pulled last", async () => {
    const v1 = registry.image("library/app:latest", ["v1"]);
    const service = await open();
    await service.pull("app");
    const v2 = registry.image("library/app:latest", ["v2"]);
    await service.pull("app");
    assert.deepEqual(service.get(v1.configDigest)?.repoTags, []);
    assert.deepEqual(service.get(v2.configDigest)?.repoTags, ["docker.io/library/app:latest"]);
  });

  it("removes by tag (untagging while other tags remain), by id, and refuses while in use", async () => {
    const img = registry.image("library/app:1", ["one"]);
    registry.tags.set("library/app:2", img.manifestDigest);
    const service = await open();
    await service.pull("app:1");
    const record = await service.pull("app:2");
    assert.deepEqual([...record.repoTags].sort(), ["docker.io/library/app:1", "docker.io/library/app:2"]);
    await service.remove("app:1");
    assert.deepEqual(service.find(record.id)?.repoTags, ["docker.io/library/app:2"]);
    const rootfs = await service.use(record.id, "c1");
    await writeFile(join(rootfs.upperDir, "written"), "x".repeat(10_000));
    const layer = await service.writableLayerUsage("c1");
    assert.ok(layer && layer.usedBytes >= 10_000 && layer.inodesUsed === 2, `the container's writes are counted: ${JSON.stringify(layer)}`);
    assert.equal(await service.writableLayerUsage("nobody"), undefined);
    await assert.rejects(service.remove("app:2"), (e: unknown) => e instanceof VmpodError && e.kind === "FailedPrecondition" && /in use by container c1/.test(e.message));
    await assert.rejects(service.remove(record.id), (e: unknown) => e instanceof VmpodError && e.kind === "FailedPrecondition");
    assert.ok(service.find(record.id));
    await service.release("c1");
    await service.remove(record.id);
    assert.equal(service.find(record.id), undefined);
    assert.deepEqual(await readdir(join(root, "layers")), [], "unused layers are collected");
    assert.deepEqual(await readdir(join(root, "blobs", "sha256")), []);
    await service.remove("app:2"); // gone already: not an error
  });

  it("keeps images, writable layers and their users across a restart", async () => {
    registry.image("library/app:1", ["one"]);
    const first = await open();
    const record = await first.pull("app:1", { pinned: true });
    const rootfs = await first.use(record.id, "c1");
    await writeFile(join(rootfs.upperDir, "written"), "by the container");
    const second = await open();
    assert.deepEqual(second.list().map((r) => r.id), [record.id]);
    assert.equal(second.find("app:1")?.pinned, true);
    assert.deepEqual(second.holders(record.id), ["c1"]);
    const again = await second.use(record.id, "c1");
    assert.equal(await readFile(join(again.upperDir, "written"), "utf8"), "by the container");
    await second.release("c1");
    await assert.rejects(stat(again.upperDir));
  });

  it("reports the store's bytes and inodes, and their change", async () => {
    registry.image("library/app:1", ["x".repeat(64 * 1024)]);
    const service = await open();
    const before = await service.fsInfo();
    const record = await service.pull("app:1");
    const after = await service.fsInfo();
    assert.ok(after.images.usedBytes >= before.images.usedBytes + 64 * 1024, `${after.images.usedBytes} vs ${before.images.usedBytes}`);
    assert.ok(after.images.inodesUsed > before.images.inodesUsed);
    await service.remove(record.id);
    const removed = await service.fsInfo();
    assert.equal(removed.images.usedBytes, before.images.usedBytes);
    assert.equal(removed.images.inodesUsed, before.images.inodesUsed);
  });

  it("logs the progress of a pull that takes a while", async () => {
    registry.image("library/slow:1", ["slow layer"]);
    const lines: string[] = [];
    let release = () => {};
    registry.gate = new Promise((r) => (release = r));
    const service = await LocalImageService.open({
      config: { ...defaultConfig("/nonexistent").image, root },
      registry,
      unpacker: new FakeUnpacker(),
      logger: createLogger({ sink: { write: (l) => lines.push(l) } }),
      progressEveryMs: 20,
    });
    const pulling = service.pull("slow:1");
    await new Promise((r) => setTimeout(r, 120));
    release();
    await pulling;
    const progress = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === "pulling image");
    assert.ok(progress.length >= 2, `progress lines: ${lines.join("")}`);
    assert.equal(progress[0]?.image, "docker.io/library/slow:1");
    assert.equal(progress[0]?.totalBytes, "slow layer".length);
    const after = lines.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(lines.length, after, "no progress is logged once the pull is done");
  });

  it("lists with a filter and fails clearly on a bad reference", async () => {
    registry.image("library/a:1", ["a"]);
    registry.image("library/b:1", ["b"]);
    const service = await open();
    await service.pull("a:1");
    await service.pull("b:1");
    assert.equal(service.list().length, 2);
    assert.deepEqual(service.list({ image: "b:1" }).map((r) => r.repoTags[0]), ["docker.io/library/b:1"]);
    assert.deepEqual(service.list({ image: "c:1" }), []);
    await assert.rejects(service.pull("app/UPPER"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
    await assert.rejects(service.pull("missing:1"), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound");
  });
});
