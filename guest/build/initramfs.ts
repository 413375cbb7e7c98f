/**
 * The initramfs: busybox, the modules that reach the root image, and /init
 * (guest/init/initramfs-init.sh). The modules loaded after the switch to the
 * root image live in the root image, not here: a small initramfs is unpacked
 * faster, and this one is on every pod's boot path.
 */
import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { gzipSync } from "node:zlib";
import { buildCpio, type CpioEntry } from "./cpio.js";
import type { ModuleFile } from "./modules.js";

export type InitramfsCompression = "none" | "gzip";

/** busybox applets the initramfs's /init calls by name. */
export const INITRAMFS_APPLETS: readonly string[] = ["sh", "mount", "insmod", "usleep", "switch_root", "reboot", "cat", "echo"];

export interface InitramfsSources {
  readonly busybox: string;
  readonly initScript: string;
  /** Modules in load order; only the "boot" stage is packed. */
  readonly modules: readonly ModuleFile[];
}

/** The shell variables /init sources from /etc/vmpod-initramfs.conf. */
export function initramfsConfig(modules: readonly ModuleFile[]): string {
  const boot = modules.filter((m) => m.stage === "boot").map((m) => basename(m.path));
  return `# Written by the vmpod guest build.\nMODULES_BOOT="${boot.join(" ")}"\n`;
}

/** The archive's entries, parents first. */
export async function initramfsEntries(sources: InitramfsSources): Promise<CpioEntry[]> {
  const entries: CpioEntry[] = [
    { type: "dir", path: "bin" },
    { type: "dir", path: "dev" },
    // The kernel opens /dev/console for /init's stdio before anything is mounted.
    { type: "char", path: "dev/console", major: 5, minor: 1, mode: 0o600 },
    { type: "dir", path: "etc" },
    { type: "dir", path: "lib" },
    { type: "dir", path: "lib/modules" },
    { type: "dir", path: "newroot" },
    { type: "dir", path: "proc" },
    { type: "dir", path: "sys" },
    { type: "file", path: "bin/busybox", data: await readFile(sources.busybox), mode: 0o755 },
  ];
  for (const applet of INITRAMFS_APPLETS) entries.push({ type: "symlink", path: `bin/${applet}`, target: "busybox" });
  entries.push({ type: "file", path: "etc/vmpod-initramfs.conf", data: Buffer.from(initramfsConfig(sources.modules)) });
  for (const module of sources.modules.filter((m) => m.stage === "boot")) {
    entries.push({ type: "file", path: `lib/modules/${basename(module.path)}`, data: await readFile(module.path) });
  }
  entries.push({ type: "file", path: "init", data: await readFile(sources.initScript), mode: 0o755 });
  return entries;
}

/** The initramfs image, compressed or not. */
export async function buildInitramfs(sources: InitramfsSources, compression: InitramfsCompression): Promise<Buffer> {
  const archive = buildCpio(await initramfsEntries(sources));
  return compression === "gzip" ? gzipSync(archive, { level: 9 }) : archive;
}
