/**
 * The documents of an image as registries serve them: indexes (multi-platform
 * lists), manifests and image configs, in their OCI and Docker schema 2
 * forms. Parsed from bytes and checked before anything trusts them; the
 * platform of a multi-platform image is chosen here.
 */
import { VmpodError } from "../common/errors.js";
import { parseDigest, type Digest } from "./digest.js";
import type { Compression, Descriptor, ImageRuntimeConfig, Platform } from "./types.js";

export const MediaType = {
  ociIndex: "application/vnd.oci.image.index.v1+json",
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociConfig: "application/vnd.oci.image.config.v1+json",
  ociLayer: "application/vnd.oci.image.layer.v1.tar",
  ociLayerGzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  ociLayerZstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  ociLayerNondistributable: "application/vnd.oci.image.layer.nondistributable.v1.tar",
  ociLayerNondistributableGzip: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
  ociLayerNondistributableZstd: "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerConfig: "application/vnd.docker.container.image.v1+json",
  dockerLayerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  dockerLayerForeignGzip: "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
  dockerSchema1: "application/vnd.docker.distribution.manifest.v1+json",
  dockerSchema1Signed: "application/vnd.docker.distribution.manifest.v1+prettyjws",
} as const;

export const INDEX_MEDIA_TYPES: readonly string[] = [MediaType.ociIndex, MediaType.dockerManifestList];
export const MANIFEST_MEDIA_TYPES: readonly string[] = [MediaType.ociManifest, MediaType.dockerManifest];
const CONFIG_MEDIA_TYPES: readonly string[] = [MediaType.ociConfig, MediaType.dockerConfig];
const SCHEMA1: readonly string[] = [MediaType.dockerSchema1, MediaType.dockerSchema1Signed];

/** What a registry is asked for: every manifest and index type vmpod reads. */
export const MANIFEST_ACCEPT: readonly string[] = [MediaType.ociIndex, MediaType.dockerManifestList, MediaType.ociManifest, MediaType.dockerManifest];

export interface ImageIndex {
  readonly mediaType: string;
  readonly manifests: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

export interface ImageManifest {
  readonly mediaType: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly annotations?: Readonly<Record<string, string>>;
}

/** What the image config blob gives: how to run it, its layers' diff ids, its platform. */
export interface ImageConfigInfo {
  readonly runtime: ImageRuntimeConfig;
  readonly diffIds: readonly Digest[];
  readonly platform: Platform;
}

type Json = Record<string, unknown>;

const invalid = (message: string) => new VmpodError("InvalidArgument", message);

export function isIndexMediaType(mediaType: string): boolean {
  return INDEX_MEDIA_TYPES.includes(mediaType);
}

export function isManifestMediaType(mediaType: string): boolean {
  return MANIFEST_MEDIA_TYPES.includes(mediaType);
}

/**
 * The media type of a fetched manifest or index: its own `mediaType` field,
 * else the Content-Type it came with, else its shape (older OCI documents
 * omit the field). Schema 1 manifests and anything else are refused.
 */
export function detectMediaType(bytes: Uint8Array, contentType?: string): string {
  const doc = parseJson(bytes, "manifest");
  return mediaTypeOf(doc, contentType);
}

/** A manifest or an index, whichever the bytes are. */
export function parseManifestOrIndex(
  bytes: Uint8Array,
  contentType?: string,
): { readonly kind: "index"; readonly index: ImageIndex } | { readonly kind: "manifest"; readonly manifest: ImageManifest } {
  const doc = parseJson(bytes, "manifest");
  const mediaType = mediaTypeOf(doc, contentType);
  return isIndexMediaType(mediaType) ? { kind: "index", index: indexFrom(doc, mediaType) } : { kind: "manifest", manifest: manifestFrom(doc, mediaType) };
}

export function parseIndex(bytes: Uint8Array, contentType?: string): ImageIndex {
  const doc = parseJson(bytes, "image index");
  const mediaType = mediaTypeOf(doc, contentType);
  if (!isIndexMediaType(mediaType)) throw invalid(`expected an image index, got ${mediaType}`);
  return indexFrom(doc, mediaType);
}

export function parseManifest(bytes: Uint8Array, contentType?: string): ImageManifest {
  const doc = parseJson(bytes, "image manifest");
  const mediaType = mediaTypeOf(doc, contentType);
  if (!isManifestMediaType(mediaType)) throw invalid(`expected an image manifest, got ${mediaType}`);
  return manifestFrom(doc, mediaType);
}

/** How a layer of this media type is compressed. Foreign and non-distributable layers are refused. */
export function layerCompression(mediaType: string): Compression {
  switch (mediaType) {
    case MediaType.ociLayer:
      return "none";
    case MediaType.ociLayerGzip:
    case MediaType.dockerLayerGzip:
      return "gzip";
    case MediaType.ociLayerZstd:
      return "zstd";
    case MediaType.ociLayerNondistributable:
    case MediaType.ociLayerNondistributableGzip:
    case MediaType.ociLayerNondistributableZstd:
    case MediaType.dockerLayerForeignGzip:
      throw new VmpodError(
        "Unimplemented",
        `layer media type ${mediaType} is a foreign (non-distributable) layer, which vmpod does not pull; rebuild the image without it`,
      );
    default:
      throw invalid(`unsupported layer media type ${JSON.stringify(mediaType)}`);
  }
}

/** "linux/arm64/v8" → { os: "linux", architecture: "arm64", variant: "v8" }. */
export function parsePlatform(s: string): Platform {
  const parts = s.split("/");
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[A-Za-z0-9_.-]+$/.test(p))) {
    throw invalid(`platform ${JSON.stringify(s)} is not os/architecture[/variant]`);
  }
  const [os = "", architecture = "", variant] = parts.map((p) => p.toLowerCase());
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ""}`;
}

/**
 * The platform in the form images are matched by: architecture aliases
 * resolved (x86_64 → amd64, aarch64 → arm64), the default variant filled in
 * (arm64 → v8, arm → v7; amd64 has none, v1 counts as none).
 */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  let architecture = p.architecture.toLowerCase();
  let variant = p.variant?.toLowerCase() || undefined;
  if (architecture === "x86_64" || architecture === "x86-64") architecture = "amd64";
  if (architecture === "aarch64") architecture = "arm64";
  if (architecture === "armhf" || architecture === "armel") {
    variant = architecture === "armhf" ? "v7" : "v6";
    architecture = "arm";
  }
  if (architecture === "amd64" && variant === "v1") variant = undefined;
  if (architecture === "arm64" && (variant === undefined || variant === "8")) variant = "v8";
  if (architecture === "arm" && variant === undefined) variant = "v7";
  if (architecture === "arm" && /^[5-8]$/.test(variant ?? "")) variant = `v${variant}`;
  return { os, architecture, ...(variant === undefined ? {} : { variant }) };
}

/**
 * The index entry for `platform` ("linux/amd64"). An entry with the same
 * variant wins; else the newest older variant the machine also runs (arm v6
 * on v7, amd64 v1 on v3); entries without a platform (attestations) are
 * never chosen. NotFound lists the platforms the index has.
 */
export function selectPlatform(index: ImageIndex, platform: string): Descriptor {
  const want = normalizePlatform(parsePlatform(platform));
  const wantLevel = variantLevel(want.variant);
  let best: { descriptor: Descriptor; level: number } | undefined;
  for (const descriptor of index.manifests) {
    if (descriptor.platform === undefined || !isManifestMediaType(descriptor.mediaType)) continue;
    const have = normalizePlatform(descriptor.platform);
    if (have.os !== want.os || have.architecture !== want.architecture) continue;
    if (have.variant === want.variant) return descriptor;
    const level = variantLevel(have.variant);
    if (wantLevel === undefined || level === undefined || level > wantLevel) continue;
    if (best === undefined || level > best.level) best = { descriptor, level };
  }
  if (best) return best.descriptor;
  const available = index.manifests.filter((d) => d.platform && d.platform.os !== "unknown").map((d) => formatPlatform(d.platform as Platform));
  throw new VmpodError(
    "NotFound",
    `no image for platform ${formatPlatform(want)} in the index; it has ${available.length === 0 ? "no platform-specific images" : [...new Set(available)].join(", ")}`,
  );
}

/** v1 is 1, v8 is 8; no variant counts as 1 (amd64's baseline) and anything else as incomparable. */
function variantLevel(variant: string | undefined): number | undefined {
  if (variant === undefined) return 1;
  const m = /^v([0-9]+)$/.exec(variant);
  return m ? Number(m[1]) : undefined;
}

/** The image config blob (OCI image config or Docker container config). */
export function parseImageConfig(bytes: Uint8Array): ImageConfigInfo {
  const doc = parseJson(bytes, "image config");
  const os = doc["os"];
  const architecture = doc["architecture"];
  if (typeof os !== "string" || os === "" || typeof architecture !== "string" || architecture === "") {
    throw invalid("image config lacks its os or architecture");
  }
  const variant = optionalString(doc["variant"], "image config variant");
  const rootfs = doc["rootfs"];
  if (!isObject(rootfs)) throw invalid("image config has no rootfs");
  if (rootfs["type"] !== "layers") throw invalid(`image config rootfs.type is ${JSON.stringify(rootfs["type"])}, expected "layers"`);
  const diffIdsRaw = rootfs["diff_ids"];
  if (!Array.isArray(diffIdsRaw)) throw invalid("image config rootfs.diff_ids is not a list");
  const diffIds = diffIdsRaw.map((d) => {
    if (typeof d !== "string") throw invalid("image config rootfs.diff_ids holds a non-string");
    return parseDigest(d, "image config diff id");
  });

  const c = doc["config"] ?? {};
  if (!isObject(c)) throw invalid("image config's config is not an object");
  const user = optionalString(c["User"], "config.User");
  const workingDir = optionalString(c["WorkingDir"], "config.WorkingDir");
  const stopSignal = optionalString(c["StopSignal"], "config.StopSignal");
  const runtime: ImageRuntimeConfig = {
    ...(user ? { user } : {}),
    env: stringList(c["Env"], "config.Env"),
    entrypoint: stringList(c["Entrypoint"], "config.Entrypoint"),
    cmd: stringList(c["Cmd"], "config.Cmd"),
    ...(workingDir ? { workingDir } : {}),
    ...(stopSignal ? { stopSignal } : {}),
    exposedPorts: objectKeys(c["ExposedPorts"], "config.ExposedPorts"),
    volumes: objectKeys(c["Volumes"], "config.Volumes"),
    labels: stringMap(c["Labels"], "config.Labels") ?? {},
  };
  return { runtime, diffIds, platform: { os, architecture, ...(variant ? { variant } : {}) } };
}

function mediaTypeOf(doc: Json, contentType: string | undefined): string {
  const field = doc["mediaType"];
  if (field !== undefined && typeof field !== "string") throw invalid("manifest mediaType is not a string");
  const header = contentType?.split(";")[0]?.trim().toLowerCase();
  const schemaVersion = doc["schemaVersion"];
  if ((field !== undefined && SCHEMA1.includes(field)) || (header !== undefined && SCHEMA1.includes(header)) || schemaVersion === 1) {
    throw new VmpodError("Unimplemented", "the image has a Docker schema 1 manifest, which vmpod does not pull (deprecated format); push the image again with a current client");
  }
  if (schemaVersion !== 2) throw invalid(`manifest schemaVersion is ${JSON.stringify(schemaVersion)}, expected 2`);
  let mediaType = field;
  if (mediaType === undefined && header !== undefined && (isIndexMediaType(header) || isManifestMediaType(header))) mediaType = header;
  if (mediaType === undefined) {
    if (Array.isArray(doc["manifests"])) mediaType = MediaType.ociIndex;
    else if (isObject(doc["config"]) && Array.isArray(doc["layers"])) mediaType = MediaType.ociManifest;
  }
  if (mediaType === undefined) throw invalid("the document is neither an image manifest nor an image index");
  if (!isIndexMediaType(mediaType) && !isManifestMediaType(mediaType)) throw invalid(`unsupported manifest media type ${JSON.stringify(mediaType)}`);
  return mediaType;
}

function indexFrom(doc: Json, mediaType: string): ImageIndex {
  const manifests = doc["manifests"];
  if (!Array.isArray(manifests)) throw invalid("image index has no manifests list");
  const annotations = stringMap(doc["annotations"], "index annotations");
  return {
    mediaType,
    manifests: manifests.map((m, i) => descriptorFrom(m, `index manifests[${i}]`)),
    ...(annotations ? { annotations } : {}),
  };
}

function manifestFrom(doc: Json, mediaType: string): ImageManifest {
  const config = descriptorFrom(doc["config"], "manifest config");
  if (!CONFIG_MEDIA_TYPES.includes(config.mediaType)) {
    throw invalid(`the manifest is not a container image: its config media type is ${JSON.stringify(config.mediaType)}`);
  }
  const layers = doc["layers"];
  if (!Array.isArray(layers)) throw invalid("image manifest has no layers list");
  const descriptors = layers.map((l, i) => descriptorFrom(l, `manifest layers[${i}]`));
  for (const layer of descriptors) layerCompression(layer.mediaType);
  const annotations = stringMap(doc["annotations"], "manifest annotations");
  return { mediaType, config, layers: descriptors, ...(annotations ? { annotations } : {}) };
}

function descriptorFrom(value: unknown, what: string): Descriptor {
  if (!isObject(value)) throw invalid(`${what} is not a descriptor`);
  const mediaType = value["mediaType"];
  if (typeof mediaType !== "string" || mediaType === "") throw invalid(`${what} has no mediaType`);
  if (typeof value["digest"] !== "string") throw invalid(`${what} has no digest`);
  const digest = parseDigest(value["digest"], `${what} digest`);
  const size = value["size"];
  if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) throw invalid(`${what} size ${JSON.stringify(size)} is not a byte count`);
  let platform: Platform | undefined;
  const p = value["platform"];
  if (p !== undefined) {
    if (!isObject(p) || typeof p["os"] !== "string" || typeof p["architecture"] !== "string") throw invalid(`${what} platform lacks os or architecture`);
    const variant = optionalString(p["variant"], `${what} platform variant`);
    platform = { os: p["os"], architecture: p["architecture"], ...(variant ? { variant } : {}) };
  }
  const annotations = stringMap(value["annotations"], `${what} annotations`);
  const urls = value["urls"];
  if (urls !== undefined && (!Array.isArray(urls) || !urls.every((u) => typeof u === "string"))) throw invalid(`${what} urls is not a list of strings`);
  return {
    mediaType,
    digest,
    size,
    ...(platform ? { platform } : {}),
    ...(annotations ? { annotations } : {}),
    ...(urls ? { urls: urls as string[] } : {}),
  };
}

function parseJson(bytes: Uint8Array, what: string): Json {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("utf8"));
  } catch (err) {
    throw new VmpodError("InvalidArgument", `${what} is not valid JSON`, { cause: err });
  }
  if (!isObject(doc)) throw invalid(`${what} is not a JSON object`);
  return doc;
}

function isObject(v: unknown): v is Json {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function optionalString(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "string") throw invalid(`${what} is not a string`);
  return v;
}

function stringList(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) throw invalid(`${what} is not a list of strings`);
  return v as string[];
}

function objectKeys(v: unknown, what: string): string[] {
  if (v === undefined || v === null) return [];
  if (!isObject(v)) throw invalid(`${what} is not an object`);
  return Object.keys(v);
}

function stringMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined || v === null) return undefined;
  if (!isObject(v) || !Object.values(v).every((s) => typeof s === "string")) throw invalid(`${what} is not a map of strings`);
  return v as Record<string, string>;
}
