/**
 * ensureGuestImage: the guest image for the current inputs, built once and
 * then reused. Images live in `guest/out/<hash>/`; `guest/out/current` points
 * at the newest one built from the real agent. A build happens in a temporary
 * directory renamed into place when complete, so an interrupted build never
 * leaves a half image that looks complete.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, readlink, rename, rm, stat, symlink, utimes } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { failedPrecondition, wrap } from "../../src/common/errors.js";
import { findRepoRoot } from "../../src/common/fs.js";
import { buildImage, IMAGE_FILES, type BuildSettings, type GuestManifest } from "./build.js";
import { hashInputs } from "./hash.js";
import { collectSources, hashInputsOf, type SourceOptions } from "./inputs.js";
import type { InitramfsCompression } from "./initramfs.js";
import type { ErofsCompression } from "./rootfs.js";

/**
 * Chosen by measurement under TCG (guest/README.md): an uncompressed erofs
 * (node started ~0.8 s later from lz4, ~1.3 s later from lz4hc) and a gzip
 * initramfs (as fast as an uncompressed one by PVH, ~0.4 s faster with the
 * bzImage, half the size).
 */
export const DEFAULT_SETTINGS: BuildSettings = { rootCompression: "none", initramfsCompression: "gzip" };

export interface GuestImageOptions {
  /** The vmpod repository; default: found from this file's location. */
  readonly repoRoot?: string;
  /** Where images are kept; default `<repoRoot>/guest/out`. */
  readonly outDir?: string;
  /** The agent's entry point; default `<repoRoot>/guest/agent/main.ts`. */
  readonly agentEntry?: string;
  /** Point `<outDir>/current` at the image; default: only when the agent is the default one. */
  readonly setCurrent?: boolean;
  /** How many images to keep in outDir (besides the current one); default 4. */
  readonly keep?: number;
  readonly kernel?: string;
  readonly nodeBinary?: string;
  readonly crun?: string;
  readonly busybox?: string;
  readonly rootCompression?: ErofsCompression;
  readonly initramfsCompression?: InitramfsCompression;
  /** Progress lines (what was built or reused, and where). */
  readonly log?: (message: string) => void;
}

export interface GuestImage {
  readonly hash: string;
  readonly dir: string;
  /** Debian's kernel as shipped (bzImage). */
  readonly kernel: string;
  /**
   * The same kernel uncompressed (ELF) with its PVH entry point, when the
   * build could extract it: QEMU's -kernel boots it directly (microvm and
   * q35), skipping the bzImage's decompression: 0.05 to 0.3 s sooner under
   * TCG. Undefined when the kernel has no PVH entry or its compression is not
   * one the build reads.
   */
  readonly vmlinux: string | undefined;
  readonly initrd: string;
  readonly rootImage: string;
  readonly manifest: GuestManifest;
  /** True when an existing image was reused, false when it was built now. */
  readonly reused: boolean;
}

/** Length of the hash prefix naming an image's directory. */
const DIR_HASH_LENGTH = 16;
const TEMP_PREFIX = ".tmp-";

/** The guest image for the current inputs: reused when it exists, built otherwise. */
export async function ensureGuestImage(options: GuestImageOptions = {}): Promise<GuestImage> {
  const log = options.log ?? (() => {});
  const repoRoot = options.repoRoot ?? (await findRepoRoot(dirname(fileURLToPath(import.meta.url))));
  const outDir = resolve(options.outDir ?? join(repoRoot, "guest/out"));
  const defaultAgent = join(repoRoot, "guest/agent/main.ts");
  const agentEntry = resolve(repoRoot, options.agentEntry ?? defaultAgent);
  const setCurrent = options.setCurrent ?? agentEntry === defaultAgent;
  const settings: BuildSettings = {
    rootCompression: options.rootCompression ?? DEFAULT_SETTINGS.rootCompression,
    initramfsCompression: options.initramfsCompression ?? DEFAULT_SETTINGS.initramfsCompression,
  };
  const sourceOptions: SourceOptions = {
    repoRoot,
    agentEntry,
    ...(options.kernel === undefined ? {} : { kernel: options.kernel }),
    ...(options.nodeBinary === undefined ? {} : { nodeBinary: options.nodeBinary }),
    ...(options.crun === undefined ? {} : { crun: options.crun }),
    ...(options.busybox === undefined ? {} : { busybox: options.busybox }),
  };

  const sources = await collectSources(sourceOptions);
  for (const warning of sources.agent.warnings) log(`agent bundle: ${warning.trim()}`);
  const { hash } = await hashInputs(hashInputsOf(sources, { ...settings }));
  const name = hash.slice(0, DIR_HASH_LENGTH);
  const dir = join(outDir, name);

  let manifest = await readManifest(dir, hash);
  let reused = manifest !== undefined;
  if (manifest !== undefined) {
    // Recently used images survive pruning.
    const now = new Date();
    await utimes(dir, now, now);
  } else {
    await mkdir(outDir, { recursive: true });
    await removeAbandonedBuilds(outDir);
    const temp = join(outDir, `${TEMP_PREFIX}${name}-${process.pid}-${randomBytes(4).toString("hex")}`);
    log(`building guest image ${name} (kernel ${sources.kernel.version}, node ${sources.node.version}, crun ${sources.crun.version})`);
    try {
      await mkdir(temp);
      const built = await buildImage(temp, sources, hash, settings);
      manifest = await moveIntoPlace(temp, dir, hash, built);
      reused = manifest !== built;
    } catch (err) {
      await rm(temp, { recursive: true, force: true });
      throw wrap(`build guest image ${name}`, err);
    }
  }
  log(`${reused ? "reused" : "built"} guest image ${dir}`);

  if (setCurrent) await pointCurrent(outDir, name);
  await prune(outDir, options.keep ?? 4, name);
  return {
    hash,
    dir,
    kernel: join(dir, IMAGE_FILES.kernel),
    vmlinux: manifest.pvh ? join(dir, IMAGE_FILES.vmlinux) : undefined,
    initrd: join(dir, IMAGE_FILES.initrd),
    rootImage: join(dir, IMAGE_FILES.root),
    manifest,
    reused,
  };
}

/** The manifest of the complete image in `dir` if it is the one for `hash`. */
async function readManifest(dir: string, hash: string): Promise<GuestManifest | undefined> {
  let manifest: GuestManifest;
  try {
    manifest = JSON.parse(await readFile(join(dir, IMAGE_FILES.manifest), "utf8")) as GuestManifest;
  } catch {
    return undefined;
  }
  return manifest.hash === hash ? manifest : undefined;
}

/**
 * Renames the finished build into place. If another process finished the same
 * image first, its copy is kept and this one dropped; returns the manifest of
 * the image in place.
 */
async function moveIntoPlace(temp: string, dir: string, hash: string, built: GuestManifest): Promise<GuestManifest> {
  try {
    await rename(temp, dir);
    return built;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw err;
  }
  const existing = await readManifest(dir, hash);
  await rm(temp, { recursive: true, force: true });
  if (existing !== undefined) return existing;
  // A directory of that name without a valid manifest: not ours to trust.
  throw failedPrecondition(`${dir} exists but holds no complete image for ${hash}: remove it`);
}

/** Points `<outDir>/current` at `name`, atomically (a new symlink renamed over the old). */
async function pointCurrent(outDir: string, name: string): Promise<void> {
  const temp = join(outDir, `${TEMP_PREFIX}current-${randomBytes(4).toString("hex")}`);
  await symlink(name, temp);
  try {
    await rename(temp, join(outDir, "current"));
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Removes temporary build directories whose builder process is gone. */
async function removeAbandonedBuilds(outDir: string): Promise<void> {
  for (const entry of await readdir(outDir)) {
    const pid = new RegExp(`^\\${TEMP_PREFIX}[0-9a-f]+-(\\d+)-[0-9a-f]+$`).exec(entry)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    await rm(join(outDir, entry), { recursive: true, force: true });
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Keeps the `keep` most recently built or used images, the current one and `inUse`; removes the others. */
async function prune(outDir: string, keep: number, inUse: string): Promise<void> {
  const current = await readlink(join(outDir, "current")).catch(() => undefined);
  const images: { name: string; mtime: number }[] = [];
  for (const entry of await readdir(outDir)) {
    if (!new RegExp(`^[0-9a-f]{${DIR_HASH_LENGTH}}$`).test(entry)) continue;
    const info = await stat(join(outDir, entry)).catch(() => undefined);
    if (info?.isDirectory()) images.push({ name: entry, mtime: info.mtimeMs });
  }
  images.sort((a, b) => b.mtime - a.mtime);
  for (const image of images.slice(keep)) {
    if (image.name === current || image.name === inUse) continue;
    await rm(join(outDir, image.name), { recursive: true, force: true });
  }
}
