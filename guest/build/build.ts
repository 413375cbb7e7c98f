/**
 * Builds the files of a guest image (vmlinuz, initrd.img, root.erofs, and
 * vmlinux when the kernel can boot by PVH) and its manifest into a directory. The caller owns the directory: it is a
 * temporary one, renamed into place once complete (see ensure.ts).
 */
import { copyFile, mkdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { wrap } from "../../src/common/errors.js";
import type { GuestSources } from "./inputs.js";
import { buildInitramfs, type InitramfsCompression } from "./initramfs.js";
import { BASE_KERNEL_PARAMS } from "./kernel-params.js";
import { MODULE_STAGES, type ModuleStage } from "./modules.js";
import { packErofs, stageRoot, uuidFromHash, type ErofsCompression } from "./rootfs.js";
import { extractVmlinux, hasPvhEntry } from "./vmlinux.js";

export const IMAGE_FILES = {
  kernel: "vmlinuz",
  vmlinux: "vmlinux",
  initrd: "initrd.img",
  root: "root.erofs",
  manifest: "manifest.json",
} as const;

export interface BuildSettings {
  readonly rootCompression: ErofsCompression;
  readonly initramfsCompression: InitramfsCompression;
}

/** What manifest.json records about an image. */
export interface GuestManifest {
  readonly hash: string;
  readonly kernelVersion: string;
  readonly nodeVersion: string;
  readonly crunVersion: string;
  readonly koffiVersion: string;
  readonly mkfsErofsVersion: string;
  readonly rootCompression: ErofsCompression;
  readonly initramfsCompression: InitramfsCompression;
  readonly modules: Readonly<Record<ModuleStage, readonly string[]>>;
  readonly baseKernelParams: readonly string[];
  /** The agent's entry point, relative to the repository when inside it. */
  readonly agentEntry: string;
  /** True when the image holds `vmlinux`, the uncompressed kernel with a PVH entry point. */
  readonly pvh: boolean;
  /** File sizes in bytes (root.erofs padded); vmlinux is 0 when there is none. */
  readonly sizes: { readonly kernel: number; readonly vmlinux: number; readonly initrd: number; readonly root: number };
  readonly builtAt: string;
  readonly buildMs: number;
}

/** Builds the image whose inputs are `sources` and whose hash is `hash` into `dir` (empty). */
export async function buildImage(dir: string, sources: GuestSources, hash: string, settings: BuildSettings): Promise<GuestManifest> {
  const started = performance.now();
  const files = {
    kernel: join(dir, IMAGE_FILES.kernel),
    initrd: join(dir, IMAGE_FILES.initrd),
    root: join(dir, IMAGE_FILES.root),
  };
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (err) {
      throw wrap(name, err);
    }
  };

  await step("copy kernel", () => copyFile(sources.kernel.path, files.kernel));
  const pvh = await step("extract vmlinux", async () => {
    const vmlinux = extractVmlinux(await readFile(sources.kernel.path));
    if (vmlinux === undefined || !hasPvhEntry(vmlinux)) return false;
    await writeFile(join(dir, IMAGE_FILES.vmlinux), vmlinux, { mode: 0o644 });
    return true;
  });
  await step("build initramfs", async () => {
    const image = await buildInitramfs(
      { busybox: sources.busybox.path, initScript: sources.initScripts.initramfs, modules: sources.modules },
      settings.initramfsCompression,
    );
    await writeFile(files.initrd, image, { mode: 0o644 });
  });

  const imageInfo = {
    hash,
    kernelVersion: sources.kernel.version,
    nodeVersion: sources.node.version,
    crunVersion: sources.crun.version,
  };
  const stage = join(dir, "stage");
  const mkfsErofsVersion = await step("build root image", async () => {
    await mkdir(stage);
    await stageRoot(stage, sources, imageInfo);
    return packErofs(sources.mkfsErofs, stage, files.root, settings.rootCompression, uuidFromHash(hash));
  });
  await rm(stage, { recursive: true, force: true });

  const modules = Object.fromEntries(
    MODULE_STAGES.map((s) => [s, sources.modules.filter((m) => m.stage === s).map((m) => m.name)]),
  ) as Record<ModuleStage, string[]>;
  const manifest: GuestManifest = {
    ...imageInfo,
    koffiVersion: sources.koffi.version,
    mkfsErofsVersion,
    rootCompression: settings.rootCompression,
    initramfsCompression: settings.initramfsCompression,
    modules,
    baseKernelParams: BASE_KERNEL_PARAMS,
    agentEntry: sources.agent.entry.startsWith(sources.repoRoot + "/") ? sources.agent.entry.slice(sources.repoRoot.length + 1) : sources.agent.entry,
    pvh,
    sizes: {
      kernel: (await stat(files.kernel)).size,
      vmlinux: pvh ? (await stat(join(dir, IMAGE_FILES.vmlinux))).size : 0,
      initrd: (await stat(files.initrd)).size,
      root: (await stat(files.root)).size,
    },
    builtAt: new Date().toISOString(),
    buildMs: Math.round(performance.now() - started),
  };
  await writeFile(join(dir, IMAGE_FILES.manifest), JSON.stringify(manifest, null, 2) + "\n", { mode: 0o644 });
  return manifest;
}
