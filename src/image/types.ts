/**
 * The image layer's domain types and the interfaces between its parts:
 * the registry client (registry/), the layer unpacker (unpack/), the store
 * (store/) and the service the CRI server calls (service.ts).
 */
import type { Readable } from "node:stream";
import type { Digest } from "./digest.js";

/** linux/amd64, linux/arm64/v8, ... */
export interface Platform {
  readonly os: string;
  readonly architecture: string;
  readonly variant?: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly platform?: Platform;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly urls?: readonly string[];
}

/**
 * A parsed, normalized image reference: `busybox` is
 * { registry: "docker.io", repository: "library/busybox", tag: "latest" }.
 * With a digest, the tag (if any) is informational and the digest decides.
 */
export interface ImageReference {
  /** Host and optional port: "docker.io", "127.0.0.1:5000". */
  readonly registry: string;
  readonly repository: string;
  readonly tag?: string;
  readonly digest?: Digest;
}

/**
 * Credentials for one pull, as CRI's AuthConfig carries them. `auth` is
 * base64("user:password"); `identityToken` is exchanged for a bearer token
 * (OAuth2 refresh token); `registryToken` is a bearer token used as is.
 */
export interface RegistryCredentials {
  readonly username?: string;
  readonly password?: string;
  readonly auth?: string;
  readonly identityToken?: string;
  readonly registryToken?: string;
}

export interface RequestOptions {
  readonly credentials?: RegistryCredentials;
  readonly signal?: AbortSignal;
}

/** A manifest or index as fetched: its exact bytes, verified against its digest. */
export interface FetchedManifest {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly bytes: Buffer;
  /** The endpoint that served it ("https://registry-1.docker.io", a mirror, ...). */
  readonly endpoint: string;
}

/** An open blob download. `body` yields the blob's bytes from `offset` on. */
export interface BlobDownload {
  readonly body: Readable;
  /** Where `body` starts: the offset asked for when the registry honoured the range, else 0. */
  readonly offset: number;
}

/**
 * The registry protocol (OCI distribution v2), with host configuration,
 * mirrors and authentication inside. Knows nothing of the store.
 */
export interface Registry {
  /** The manifest or index `reference` names (by digest when it has one, else by tag). */
  getManifest(ref: ImageReference, options?: RequestOptions): Promise<FetchedManifest>;
  /** A manifest by digest from the same repository (an index's chosen entry). */
  getManifestByDigest(ref: ImageReference, digest: Digest, options?: RequestOptions): Promise<FetchedManifest>;
  /**
   * Starts a blob download. `offset` > 0 asks for a range (to resume a
   * partial download); the caller hashes and verifies what arrives.
   */
  openBlob(ref: ImageReference, descriptor: Descriptor, options?: RequestOptions & { readonly offset?: number }): Promise<BlobDownload>;
  /** Drops cached tokens and connections. Idempotent. */
  close(): Promise<void>;
}

export type Compression = "gzip" | "zstd" | "none";

/** What unpacking one layer found. */
export interface UnpackResult {
  /** The digest of the uncompressed tar (the layer's diff id). */
  readonly diffId: Digest;
  /** Bytes of the uncompressed tar. */
  readonly uncompressedSize: number;
  readonly entries: number;
}

/**
 * Unpacks one layer (a possibly compressed tar stream) into an empty
 * directory in overlayfs form: whiteouts become 0/0 character devices,
 * opaque directories get `trusted.overlay.opaque=y`. Refuses (InvalidArgument)
 * any entry that would write outside `targetDir`.
 */
export interface LayerUnpacker {
  unpack(source: Readable, compression: Compression, targetDir: string, options?: { readonly signal?: AbortSignal }): Promise<UnpackResult>;
}

/** What a container needs from its image's config (OCI image config `config` object). */
export interface ImageRuntimeConfig {
  readonly user?: string;
  readonly env: readonly string[];
  readonly entrypoint: readonly string[];
  readonly cmd: readonly string[];
  readonly workingDir?: string;
  readonly stopSignal?: string;
  readonly exposedPorts: readonly string[];
  readonly volumes: readonly string[];
  readonly labels: Readonly<Record<string, string>>;
}

/** One image in the store. Its id is its config's digest, as in containerd and CRI-O. */
export interface ImageRecord {
  readonly id: Digest;
  /** "docker.io/library/busybox:latest", ... */
  readonly repoTags: readonly string[];
  /** "docker.io/library/busybox@sha256:…" (the manifest's or index's digest). */
  readonly repoDigests: readonly string[];
  /** The manifest chosen for this platform. */
  readonly manifestDigest: Digest;
  /** The layers' diff ids, lowest first. */
  readonly layers: readonly Digest[];
  /** Bytes: compressed layers + config + manifest, as registries and kubelet count them. */
  readonly size: number;
  readonly platform: Platform;
  readonly config: ImageRuntimeConfig;
  /** Pinned images are never removed by kubelet's image garbage collection. */
  readonly pinned: boolean;
  /** ISO 8601. */
  readonly pulledAt: string;
}

export interface PullOptions {
  readonly credentials?: RegistryCredentials;
  readonly signal?: AbortSignal;
  /** Pin the image (the sandbox image is pinned). */
  readonly pinned?: boolean;
}

/** ListImages' filter: an image reference, matched against tags, digests and ids. */
export interface ImageFilter {
  readonly image?: string;
}

/** Usage of the filesystem an image store lives on, as ImageFsInfo reports it. */
export interface FilesystemUsage {
  /** The directory measured. */
  readonly mountpoint: string;
  readonly usedBytes: number;
  readonly inodesUsed: number;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
}

/**
 * A container's root filesystem, ready to be mounted: the image's unpacked
 * layers (lowest first, each an overlay lower directory, and an erofs image
 * of it for block layers) and the container's own writable layer (an
 * overlay upper and work directory on the host).
 */
export interface RootfsLayers {
  readonly imageId: Digest;
  /** `blockImage`: the layer as a read-only erofs image, when asked for. */
  readonly layers: readonly { readonly diffId: Digest; readonly dir: string; readonly blockImage?: string }[];
  readonly upperDir: string;
  readonly workDir: string;
}

/** The stored manifest and config of an image, for verbose status. */
export interface ImageDescription {
  readonly record: ImageRecord;
  readonly manifest: unknown;
  readonly config: unknown;
}

/** What the CRI ImageService and the sandbox layer use. */
export interface ImageService {
  /** Pulls (or finds up to date) the image `reference` names; returns its record. */
  pull(reference: string, options?: PullOptions): Promise<ImageRecord>;
  /** The image a reference, id or digest names, or undefined. */
  find(reference: string): ImageRecord | undefined;
  list(filter?: ImageFilter): ImageRecord[];
  /**
   * Removes a reference. By tag or digest while other references remain:
   * only that reference goes. The last reference, or by id: the image goes,
   * refused (FailedPrecondition) while a container uses it.
   */
  remove(reference: string): Promise<void>;
  describe(imageId: Digest): Promise<ImageDescription>;
  /** Bytes and inodes of the image store, and of the containers' writable layers. */
  fsInfo(): Promise<{ readonly images: FilesystemUsage; readonly containers: FilesystemUsage }>;
  /**
   * Makes `holder` (a container id) a user of the image, with its own
   * writable layer, until `release(holder)`; survives restarts. Calling it
   * again for the same holder and image gives the same layer.
   */
  use(imageId: Digest, holder: string, options?: { readonly blockImages?: boolean }): Promise<RootfsLayers>;
  /**
   * Bytes and inodes of a holder's writable layer on the host; undefined for
   * an unknown holder. (With block layers a container writes in the guest,
   * and its layer here stays empty.)
   */
  writableLayerUsage(holder: string): Promise<FilesystemUsage | undefined>;
  /** Ends a holder's use and deletes its writable layer. Unknown holders are ignored. */
  release(holder: string): Promise<void>;
  /** The holders using an image. */
  holders(imageId: Digest): string[];
}
