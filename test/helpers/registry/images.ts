/**
 * The test images, built here from busybox-static and pushed to a test
 * registry with the fixture's own push client: busybox, a layered image with
 * whiteouts, a two-platform index (OCI and Docker manifest list), a zstd
 * layer, Docker schema 2, a large image for the pull benchmark, and hostile
 * layers the unpacker must refuse. Built images are kept in memory for the
 * rest of the process (their bytes never change), so pushing one again to
 * another registry costs only the upload.
 */
import type { Digest } from "../../../src/image/digest.js";
import { HOSTILE_LAYERS, ustar, type HostileKind } from "./hostile-tar.js";
import { layerBlob, mergedView, tarOf, type Compression, type ExpectedView, type LayerBlob, type LayerEntry } from "./layer.js";
import {
  busyboxEntries, LARGE_LAYERS, LAYERED_ABSENT, largeDataEntries, layeredAdds, layeredWhiteouts, markerEntries,
} from "./layouts.js";
import { imageConfig, imageIndex, imageManifest, type Document, type ImageFormat, type Platform, type RuntimeConfig } from "./oci.js";
import { PushClient, type PushTarget } from "./push.js";

export const AMD64: Platform = { os: "linux", architecture: "amd64" };
export const ARM64: Platform = { os: "linux", architecture: "arm64", variant: "v8" };

/** The busybox image's config: what a container made from it inherits. */
export const BUSYBOX_RUNTIME: RuntimeConfig = {
  Cmd: ["/bin/sh"],
  Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "VMPOD_TEST_IMAGE=busybox"],
  WorkingDir: "/root",
  User: "root",
  Labels: { "org.opencontainers.image.title": "vmpod-test-busybox", "io.vmpod.test": "busybox" },
};

/** An image built in memory, ready to push anywhere. */
export interface BuiltImage {
  readonly format: ImageFormat;
  readonly platform: Platform;
  readonly layers: readonly LayerBlob[];
  readonly config: Document;
  readonly manifest: Document;
  readonly runtime: RuntimeConfig;
  /** The merged root filesystem the layers must unpack to (paths absolute). */
  readonly files: ExpectedView;
  /** Paths a lower layer had and an upper one removes: absent from the merged view. */
  readonly absent: readonly string[];
}

/** An image pushed to a registry. */
export interface PushedImage {
  readonly image: BuiltImage;
  /** "127.0.0.1:PORT" */
  readonly host: string;
  readonly repository: string;
  readonly tag: string;
  /** "127.0.0.1:PORT/REPOSITORY:TAG" */
  readonly reference: string;
  /** "127.0.0.1:PORT/REPOSITORY@sha256:…" */
  readonly digestReference: string;
  readonly manifestDigest: Digest;
  readonly manifestMediaType: string;
  readonly configDigest: Digest;
  /** Lowest first. */
  readonly diffIds: readonly Digest[];
  readonly layers: readonly LayerBlob[];
  /** Compressed layers + config + manifest, as kubelet counts an image's size. */
  readonly size: number;
  readonly files: ExpectedView;
  readonly absent: readonly string[];
}

/** An index (or Docker manifest list) pushed with its images. */
export interface PushedIndex {
  readonly host: string;
  readonly repository: string;
  readonly tag: string;
  readonly reference: string;
  readonly digestReference: string;
  readonly indexDigest: Digest;
  readonly mediaType: string;
  readonly index: Document;
  /** In the index's order: linux/amd64 (busybox), then linux/arm64/v8 (a marker image). */
  readonly entries: readonly { readonly platform: Platform; readonly image: PushedImage }[];
}

export interface PushOptions {
  readonly repository?: string;
  readonly tag?: string;
}

/** A registry (or a proxy) to push to: RunningRegistry fits. */
export type Target = PushTarget & { readonly host: string };

const cache = new Map<string, Promise<unknown>>();

function once<T>(key: string, build: () => Promise<T>): Promise<T> {
  let built = cache.get(key) as Promise<T> | undefined;
  if (built === undefined) {
    built = build();
    cache.set(key, built);
    built.catch(() => cache.delete(key));
  }
  return built;
}

function layer(key: string, entries: () => LayerEntry[], compression: Compression, level?: number): Promise<LayerBlob> {
  return once(`layer:${key}:${compression}`, async () => layerBlob(await tarOf(entries()), compression, level));
}

async function assemble(
  format: ImageFormat, platform: Platform, runtime: RuntimeConfig, layers: readonly LayerBlob[],
  entries: readonly (readonly LayerEntry[])[], comment: string, absent: readonly string[] = [],
): Promise<BuiltImage> {
  const config = imageConfig(format, platform, runtime, layers, comment);
  const manifest = imageManifest(format, config, layers);
  return { format, platform, layers, config, manifest, runtime, files: await mergedView(entries), absent };
}

/** busybox: one gzip layer, /bin/busybox with its applets, users, /tmp. */
export function buildBusybox(format: ImageFormat = "oci"): Promise<BuiltImage> {
  return once(`busybox:${format}`, async () =>
    assemble(format, AMD64, BUSYBOX_RUNTIME, [await layer("busybox", busyboxEntries, "gzip")], [busyboxEntries()], "busybox"));
}

/** busybox, then a layer adding /data and /etc/motd, then one with a whiteout and an opaque directory. */
export function buildMultiLayer(): Promise<BuiltImage> {
  return once("multi-layer", async () => {
    const layers = [await layer("busybox", busyboxEntries, "gzip"), await layer("layered-adds", layeredAdds, "gzip"), await layer("layered-whiteouts", layeredWhiteouts, "gzip")];
    const runtime = { ...BUSYBOX_RUNTIME, Labels: { "io.vmpod.test": "multi-layer" } };
    return assemble("oci", AMD64, runtime, layers, [busyboxEntries(), layeredAdds(), layeredWhiteouts()], "multi-layer", LAYERED_ABSENT);
  });
}

/** The arm64 side of the index: one layer holding /marker. */
export function buildArm64Marker(format: ImageFormat = "oci"): Promise<BuiltImage> {
  return once(`arm64:${format}`, async () => {
    const entries = () => markerEntries("linux/arm64/v8");
    const runtime: RuntimeConfig = { Cmd: ["/marker"], Labels: { "io.vmpod.test": "arm64-marker" } };
    return assemble(format, ARM64, runtime, [await layer("arm64-marker", entries, "gzip")], [entries()], "arm64 marker");
  });
}

/** busybox with /etc/zstd-marker, as one zstd layer (its own diff id: no other image shares it). */
export function buildZstd(): Promise<BuiltImage> {
  return once("zstd", async () => {
    const entries = (): LayerEntry[] => [...busyboxEntries(), { type: "file", path: "etc/zstd-marker", content: "zstd layer\n" }];
    const runtime = { ...BUSYBOX_RUNTIME, Labels: { "io.vmpod.test": "zstd" } };
    return assemble("oci", AMD64, runtime, [await layer("busybox-zstd", entries, "zstd")], [entries()], "zstd");
  });
}

/** About 50 MB in five layers: busybox, then four layers of 12 MiB of incompressible bytes. */
export function buildLarge(): Promise<BuiltImage> {
  return once("large", async () => {
    const layers = [await layer("busybox", busyboxEntries, "gzip")];
    const entries = [busyboxEntries()];
    for (let n = 1; n <= LARGE_LAYERS; n++) {
      layers.push(await layer(`large-${n}`, () => largeDataEntries(n), "gzip", 1));
      entries.push(largeDataEntries(n));
    }
    const runtime = { ...BUSYBOX_RUNTIME, Labels: { "io.vmpod.test": "large" } };
    return assemble("oci", AMD64, runtime, layers, entries, "large");
  });
}

/**
 * One gzip layer written by hostile-tar.ts. The unpacker must refuse the
 * whole layer, so `files` is empty: nothing of it may be seen.
 */
export function buildHostile(kind: HostileKind): Promise<BuiltImage> {
  return once(`hostile:${kind}`, async () => {
    const blob = await once(`layer:hostile-${kind}`, () => layerBlob(ustar(HOSTILE_LAYERS[kind]), "gzip"));
    const config = imageConfig("oci", AMD64, { Cmd: ["/bin/sh"] }, [blob], `hostile ${kind}`);
    return { format: "oci", platform: AMD64, layers: [blob], config, manifest: imageManifest("oci", config, [blob]), runtime: { Cmd: ["/bin/sh"] }, files: new Map(), absent: [] };
  });
}

/** Pushes a built image's blobs and its manifest under `tag`. */
export async function pushImage(target: Target, image: BuiltImage, repository: string, tag: string, client = new PushClient(target)): Promise<PushedImage> {
  await pushBlobs(client, repository, image);
  await client.pushManifest(repository, tag, image.manifest.mediaType, image.manifest.bytes);
  return pushed(target, image, repository, tag);
}

async function pushBlobs(client: PushClient, repository: string, image: BuiltImage): Promise<void> {
  for (const l of image.layers) await client.pushBlob(repository, l.digest, l.bytes);
  await client.pushBlob(repository, image.config.digest, image.config.bytes);
}

function pushed(target: Target, image: BuiltImage, repository: string, tag: string): PushedImage {
  return {
    image,
    host: target.host,
    repository,
    tag,
    reference: `${target.host}/${repository}${tag.startsWith("sha256:") ? "@" : ":"}${tag}`,
    digestReference: `${target.host}/${repository}@${image.manifest.digest}`,
    manifestDigest: image.manifest.digest,
    manifestMediaType: image.manifest.mediaType,
    configDigest: image.config.digest,
    diffIds: image.layers.map((l) => l.diffId),
    layers: image.layers,
    size: image.layers.reduce((n, l) => n + l.size, 0) + image.config.size + image.manifest.size,
    files: image.files,
    absent: image.absent,
  };
}

export async function pushBusybox(target: Target, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildBusybox(), options.repository ?? "vmpod-test/busybox", options.tag ?? "latest");
}

export async function pushMultiLayer(target: Target, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildMultiLayer(), options.repository ?? "vmpod-test/layered", options.tag ?? "latest");
}

export async function pushZstd(target: Target, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildZstd(), options.repository ?? "vmpod-test/zstd", options.tag ?? "latest");
}

/** busybox as a Docker schema 2 manifest (Docker media types for the manifest, config and layer). */
export async function pushDockerSchema2(target: Target, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildBusybox("docker"), options.repository ?? "vmpod-test/docker", options.tag ?? "latest");
}

export async function pushLarge(target: Target, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildLarge(), options.repository ?? "vmpod-test/large", options.tag ?? "latest");
}

export async function pushHostile(target: Target, kind: HostileKind, options: PushOptions = {}): Promise<PushedImage> {
  return pushImage(target, await buildHostile(kind), options.repository ?? `vmpod-test/hostile-${kind}`, options.tag ?? "latest");
}

/**
 * An index with linux/amd64 (busybox) and linux/arm64/v8 (the marker image):
 * OCI image index, or with `format: "docker"` a Docker manifest list over
 * Docker schema 2 manifests. The platform manifests are pushed by digest.
 */
export async function pushIndex(target: Target, options: PushOptions & { readonly format?: ImageFormat } = {}): Promise<PushedIndex> {
  const format = options.format ?? "oci";
  const repository = options.repository ?? (format === "oci" ? "vmpod-test/multiarch" : "vmpod-test/multiarch-docker");
  const tag = options.tag ?? "latest";
  const client = new PushClient(target);
  const images = [await buildBusybox(format), await buildArm64Marker(format)];
  const entries = [];
  for (const image of images) {
    await pushBlobs(client, repository, image);
    await client.pushManifest(repository, image.manifest.digest, image.manifest.mediaType, image.manifest.bytes);
    entries.push({ platform: image.platform, image: pushed(target, image, repository, image.manifest.digest) });
  }
  const index = imageIndex(format, images.map((i) => ({ manifest: i.manifest, platform: i.platform })));
  await client.pushManifest(repository, tag, index.mediaType, index.bytes);
  return {
    host: target.host,
    repository,
    tag,
    reference: `${target.host}/${repository}:${tag}`,
    digestReference: `${target.host}/${repository}@${index.digest}`,
    indexDigest: index.digest,
    mediaType: index.mediaType,
    index,
    entries,
  };
}
