/**
 * Image configs, manifests and indexes for the test registry, in either
 * format a registry serves: OCI, or Docker's schema 2 (the same blobs under
 * Docker's media types). Each document is serialized once; its digest is the
 * digest of exactly those bytes.
 */
import { digestOf, type Digest } from "../../../src/image/digest.js";
import type { LayerBlob } from "./layer.js";

export type ImageFormat = "oci" | "docker";

export const MEDIA_TYPES = {
  oci: {
    manifest: "application/vnd.oci.image.manifest.v1+json",
    index: "application/vnd.oci.image.index.v1+json",
    config: "application/vnd.oci.image.config.v1+json",
  },
  docker: {
    manifest: "application/vnd.docker.distribution.manifest.v2+json",
    index: "application/vnd.docker.distribution.manifest.list.v2+json",
    config: "application/vnd.docker.container.image.v1+json",
    layerGzip: "application/vnd.docker.image.rootfs.diff.tar.gzip",
  },
} as const;

export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** The `config` object of an image config (what a container inherits). */
export interface RuntimeConfig {
  readonly Cmd?: readonly string[];
  readonly Entrypoint?: readonly string[];
  readonly Env?: readonly string[];
  readonly WorkingDir?: string;
  readonly User?: string;
  readonly Labels?: Readonly<Record<string, string>>;
  readonly ExposedPorts?: Readonly<Record<string, object>>;
  readonly StopSignal?: string;
}

/** A JSON document and its digest. */
export interface Document {
  readonly mediaType: string;
  readonly bytes: Buffer;
  readonly digest: Digest;
  readonly size: number;
  readonly json: Record<string, unknown>;
}

function document(mediaType: string, json: Record<string, unknown>): Document {
  const bytes = Buffer.from(JSON.stringify(json, null, 2));
  return { mediaType, bytes, digest: digestOf(bytes), size: bytes.length, json };
}

export function imageConfig(format: ImageFormat, platform: Platform, runtime: RuntimeConfig, layers: readonly LayerBlob[], comment: string): Document {
  return document(MEDIA_TYPES[format].config, {
    created: "2023-11-14T22:13:20Z",
    architecture: platform.architecture,
    ...(platform.variant === undefined ? {} : { variant: platform.variant }),
    os: platform.os,
    config: runtime,
    rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created: "2023-11-14T22:13:20Z", created_by: `vmpod test fixture: ${comment}, layer ${i + 1}` })),
  });
}

export function imageManifest(format: ImageFormat, config: Document, layers: readonly LayerBlob[]): Document {
  return document(MEDIA_TYPES[format].manifest, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES[format].manifest,
    config: { mediaType: config.mediaType, digest: config.digest, size: config.size },
    layers: layers.map((l) => ({ mediaType: format === "docker" ? dockerLayerType(l) : l.mediaType, digest: l.digest, size: l.size })),
  });
}

export function imageIndex(format: ImageFormat, entries: readonly { readonly manifest: Document; readonly platform: Platform }[]): Document {
  return document(MEDIA_TYPES[format].index, {
    schemaVersion: 2,
    mediaType: MEDIA_TYPES[format].index,
    manifests: entries.map((e) => ({
      mediaType: e.manifest.mediaType,
      digest: e.manifest.digest,
      size: e.manifest.size,
      platform: { architecture: e.platform.architecture, os: e.platform.os, ...(e.platform.variant === undefined ? {} : { variant: e.platform.variant }) },
    })),
  });
}

function dockerLayerType(layer: LayerBlob): string {
  if (layer.compression !== "gzip") throw new Error(`Docker schema 2 has no media type for a ${layer.compression} layer`);
  return MEDIA_TYPES.docker.layerGzip;
}
