/**
 * Image layers for the test registry, made for real: a directory laid out
 * from a list of entries, archived by GNU tar (numeric owner 0:0, names
 * sorted, one fixed mtime, no atime/ctime: the same bytes every run),
 * compressed with gzip (node:zlib) or zstd (the CLI). Also the merged view
 * that a stack of such layers must produce once unpacked, whiteouts applied,
 * so tests can compare what they find with what was meant.
 */
import { createHash } from "node:crypto";
import { chmod, copyFile, link, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { promisify } from "node:util";
import { gzip as gzipCallback } from "node:zlib";
import { run } from "../../../src/common/exec.js";
import { digestOf, type Digest } from "../../../src/image/digest.js";

const gzip = promisify(gzipCallback);

/** 2023-11-14T22:13:20Z, every entry's mtime. */
export const LAYER_MTIME = 1_700_000_000;

/** One entry of a layer, path relative to the root ("bin/busybox"). */
export type LayerEntry =
  | { readonly type: "dir"; readonly path: string; readonly mode?: number }
  | { readonly type: "file"; readonly path: string; readonly mode?: number; readonly content: string | Buffer }
  /** A regular file copied from the host (busybox). */
  | { readonly type: "copy"; readonly path: string; readonly mode?: number; readonly from: string }
  | { readonly type: "symlink"; readonly path: string; readonly target: string }
  /** A hard link to another entry of the same layer (`target` relative to the root). */
  | { readonly type: "hardlink"; readonly path: string; readonly target: string };

export type Compression = "gzip" | "zstd" | "none";

/** A layer blob as pushed. */
export interface LayerBlob {
  readonly mediaType: string;
  readonly compression: Compression;
  readonly digest: Digest;
  readonly size: number;
  /** The digest of the uncompressed tar. */
  readonly diffId: Digest;
  readonly tarSize: number;
  readonly bytes: Buffer;
}

/** What one path of the merged root filesystem must be. Paths are absolute ("/bin/busybox"). */
export interface ExpectedEntry {
  readonly type: "dir" | "file" | "symlink";
  /** Permission bits (symlinks: none). */
  readonly mode?: number;
  /** Files: size and sha256 hex of the content; `content` too when it is text written by the fixture. */
  readonly size?: number;
  readonly sha256?: string;
  readonly content?: string;
  /** Symlinks. */
  readonly target?: string;
}

export type ExpectedView = ReadonlyMap<string, ExpectedEntry>;

/** The uncompressed tar of `entries`, made by GNU tar from a scratch directory. */
export async function tarOf(entries: readonly LayerEntry[]): Promise<Buffer> {
  const scratch = await mkdtemp(join(tmpdir(), "vmpod-layer-"));
  try {
    const root = join(scratch, "root");
    await mkdir(root);
    for (const entry of entries) await lay(root, entry);
    // Directories last: a file written into one after its chmod could fail on a read-only mode.
    for (const entry of entries) if (entry.type === "dir") await chmod(join(root, entry.path), entry.mode ?? 0o755);
    const tops = [...new Set(entries.map((e) => e.path.split("/")[0] as string))].sort();
    const out = join(scratch, "layer.tar");
    await run("tar", [
      "--create", `--file=${out}`, "--format=posix", "--pax-option=delete=atime,delete=ctime",
      "--numeric-owner", "--owner=0", "--group=0", "--sort=name", `--mtime=@${LAYER_MTIME}`,
      "-C", root, "--", ...tops,
    ]);
    return await readFile(out);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

async function lay(root: string, entry: LayerEntry): Promise<void> {
  const path = join(root, entry.path);
  await mkdir(dirname(path), { recursive: true });
  switch (entry.type) {
    case "dir":
      await mkdir(path, { recursive: true });
      return;
    case "file":
      await writeFile(path, entry.content);
      await chmod(path, entry.mode ?? 0o644);
      return;
    case "copy":
      await copyFile(entry.from, path);
      await chmod(path, entry.mode ?? 0o755);
      return;
    case "symlink":
      await symlink(entry.target, path);
      return;
    case "hardlink":
      await link(join(root, entry.target), path);
      return;
  }
}

export const LAYER_MEDIA_TYPES = {
  oci: { gzip: "application/vnd.oci.image.layer.v1.tar+gzip", zstd: "application/vnd.oci.image.layer.v1.tar+zstd", none: "application/vnd.oci.image.layer.v1.tar" },
  docker: { gzip: "application/vnd.docker.image.rootfs.diff.tar.gzip", zstd: undefined, none: undefined },
} as const;

/** Compresses a tar into a layer blob with the OCI media type for its compression. */
export async function layerBlob(tar: Buffer, compression: Compression, level?: number): Promise<LayerBlob> {
  let bytes: Buffer;
  if (compression === "gzip") bytes = await gzip(tar, { level: level ?? 6 });
  else if (compression === "zstd") bytes = await zstd(tar, level ?? 3);
  else bytes = tar;
  return { mediaType: LAYER_MEDIA_TYPES.oci[compression], compression, digest: digestOf(bytes), size: bytes.length, diffId: digestOf(tar), tarSize: tar.length, bytes };
}

async function zstd(tar: Buffer, level: number): Promise<Buffer> {
  const scratch = await mkdtemp(join(tmpdir(), "vmpod-zstd-"));
  try {
    await writeFile(join(scratch, "layer.tar"), tar);
    await run("zstd", ["-q", `-${level}`, "-o", join(scratch, "layer.tar.zst"), join(scratch, "layer.tar")], { whenMissing: "install the Debian package zstd" });
    return await readFile(join(scratch, "layer.tar.zst"));
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

/**
 * Applies one layer's entries on top of `view`, as an unpacker with overlay
 * semantics must: `.wh.NAME` removes NAME (and what is under it) from the
 * layers below, `.wh..wh..opq` hides everything the layers below had in its
 * directory; neither marker itself appears. Hard links read as the file they
 * point to.
 */
export async function applyLayer(view: Map<string, ExpectedEntry>, entries: readonly LayerEntry[]): Promise<void> {
  const below = new Map(view);
  const removeUnder = (dir: string, self: boolean): void => {
    for (const path of view.keys()) {
      if ((self && path === dir) || path.startsWith(dir === "/" ? "/" : dir + "/")) {
        if (below.get(path) === view.get(path)) view.delete(path);
      }
    }
  };
  for (const entry of entries) {
    const path = "/" + entry.path;
    const base = posix.basename(path);
    const parent = posix.dirname(path);
    if (base === ".wh..wh..opq") {
      removeUnder(parent, false);
      continue;
    }
    if (base.startsWith(".wh.")) {
      removeUnder(posix.join(parent, base.slice(4)), true);
      continue;
    }
    addParents(view, parent);
    view.set(path, await expected(entry, entries));
  }
}

/** The merged view of a stack of layers, lowest first. */
export async function mergedView(layers: readonly (readonly LayerEntry[])[]): Promise<ExpectedView> {
  const view = new Map<string, ExpectedEntry>([["/", { type: "dir", mode: 0o755 }]]);
  for (const entries of layers) await applyLayer(view, entries);
  return view;
}

function addParents(view: Map<string, ExpectedEntry>, dir: string): void {
  if (dir === "/" || view.has(dir)) return;
  addParents(view, posix.dirname(dir));
  view.set(dir, { type: "dir", mode: 0o755 });
}

async function expected(entry: LayerEntry, entries: readonly LayerEntry[]): Promise<ExpectedEntry> {
  switch (entry.type) {
    case "dir":
      return { type: "dir", mode: entry.mode ?? 0o755 };
    case "file": {
      const content = Buffer.from(entry.content);
      const text = typeof entry.content === "string" ? { content: entry.content } : {};
      return { type: "file", mode: entry.mode ?? 0o644, size: content.length, sha256: sha256(content), ...text };
    }
    case "copy": {
      const content = await readFile(entry.from);
      return { type: "file", mode: entry.mode ?? 0o755, size: content.length, sha256: sha256(content) };
    }
    case "symlink":
      return { type: "symlink", target: entry.target };
    case "hardlink": {
      const target = entries.find((e) => e.path === entry.target);
      if (target === undefined || target.type === "hardlink") throw new Error(`hard link ${entry.path} to ${entry.target}: no such file in the layer`);
      return expected(target, entries);
    }
  }
}

function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}
