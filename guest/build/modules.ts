/**
 * Kernel modules of the guest: which ones, in which order, and when.
 *
 * The order and the dependencies come from `modprobe -S VERSION --show-depends`;
 * modules built into the kernel are dropped, and so are soft dependencies
 * (modules.softdep: "libcrc32c pre: crc32c" pulls crc32c-intel, which fails
 * to load on a CPU without SSE4.2, and libcrc32c works without it, with the
 * built-in crc32c_generic): only the hard dependencies of modules.dep are
 * kept. The modules are loaded in three
 * stages so that the critical path stays short:
 *
 * - boot:  by the initramfs, only what reaches the root image (virtio
 *          transports, virtio_blk, erofs);
 * - agent: by the root image's init, before the agent starts (its channel);
 * - later: by the root image's init in the background, while the agent starts
 *          (among them virtio_scsi and sd_mod, for the image layers added as
 *          SCSI disks while the VM runs; they bring scsi_mod and scsi_common).
 */
import { readFile } from "node:fs/promises";
import { basename, join } from "node:path";
import { failedPrecondition, wrap } from "../../src/common/errors.js";
import { run } from "./exec.js";

export type ModuleStage = "boot" | "agent" | "later";

/** The modules the guest needs, by stage; dependencies are resolved with modprobe. */
export const GUEST_MODULES: Readonly<Record<ModuleStage, readonly string[]>> = {
  boot: ["virtio_ring", "virtio", "virtio_mmio", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk", "libcrc32c", "erofs"],
  agent: ["virtio_console"],
  later: [
    "failover",
    "net_failover",
    "virtio_net",
    "vsock",
    "vmw_vsock_virtio_transport_common",
    "vmw_vsock_virtio_transport",
    "fuse",
    "virtiofs",
    "overlay",
    "virtio_scsi",
    "sd_mod",
  ],
};

export const MODULE_STAGES: readonly ModuleStage[] = ["boot", "agent", "later"];

/** One module file to load, in order. */
export interface ModuleFile {
  /** Module name as the kernel knows it (underscores). */
  readonly name: string;
  /** Absolute path of the .ko file on the build host. */
  readonly path: string;
  readonly stage: ModuleStage;
}

/** One line of `modprobe --show-depends`. */
export type DependsLine = { readonly kind: "insmod"; readonly path: string } | { readonly kind: "builtin"; readonly name: string };

/** The kernel's name of a module: file name without .ko(.xz|.zst|.gz), dashes as underscores. */
export function moduleName(fileOrName: string): string {
  return basename(fileOrName)
    .replace(/\.ko(\.(xz|zst|gz))?$/, "")
    .replace(/-/g, "_");
}

/**
 * Parses the output of `modprobe --show-depends`: "insmod PATH [options]" and
 * "builtin NAME" lines. Anything else is an error (modprobe's output changed).
 */
export function parseShowDepends(output: string): DependsLine[] {
  const lines: DependsLine[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "") continue;
    const [verb, arg] = line.split(/\s+/);
    if (verb === "insmod" && arg !== undefined) lines.push({ kind: "insmod", path: arg });
    else if (verb === "builtin" && arg !== undefined) lines.push({ kind: "builtin", name: moduleName(arg) });
    else throw failedPrecondition(`unexpected modprobe --show-depends line: ${JSON.stringify(line)}`);
  }
  return lines;
}

/** Names of the modules built into the kernel, from the text of modules.builtin. */
export function parseModulesBuiltin(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split("\n")) {
    if (line.trim() !== "") names.add(moduleName(line.trim()));
  }
  return names;
}

/** The hard dependencies of every module, by name, from the text of modules.dep. */
export function parseModulesDep(text: string): Map<string, string[]> {
  const deps = new Map<string, string[]>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon < 0) continue;
    const module = line.slice(0, colon).trim();
    const needs = line
      .slice(colon + 1)
      .split(/\s+/)
      .filter((d) => d !== "");
    deps.set(moduleName(module), needs.map(moduleName));
  }
  return deps;
}

/** `name` and everything it needs, directly or not, according to modules.dep. */
export function hardDependencies(name: string, deps: ReadonlyMap<string, readonly string[]>): Set<string> {
  const closure = new Set<string>();
  const pending = [name];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    if (closure.has(next)) continue;
    closure.add(next);
    pending.push(...(deps.get(next) ?? []));
  }
  return closure;
}

/**
 * Orders the module files of every stage: each module comes after its
 * dependencies, appears once (in the earliest stage that needs it), and
 * built-in modules and soft dependencies are left out.
 *
 * @param depends the parsed `--show-depends` output of each requested module
 * @param hardDeps modules.dep, parsed
 */
export function orderModules(
  stages: Readonly<Record<ModuleStage, readonly string[]>>,
  depends: ReadonlyMap<string, readonly DependsLine[]>,
  builtin: ReadonlySet<string>,
  hardDeps: ReadonlyMap<string, readonly string[]>,
): ModuleFile[] {
  const seen = new Set<string>(builtin);
  const files: ModuleFile[] = [];
  for (const stage of MODULE_STAGES) {
    for (const requested of stages[stage]) {
      const lines = depends.get(requested);
      if (lines === undefined) throw failedPrecondition(`no dependency information for module ${requested}`);
      const needed = hardDependencies(requested, hardDeps);
      for (const line of lines) {
        if (line.kind === "builtin") {
          seen.add(line.name);
          continue;
        }
        const name = moduleName(line.path);
        if (seen.has(name) || !needed.has(name)) continue;
        seen.add(name);
        files.push({ name, path: line.path, stage });
      }
    }
  }
  return files;
}

/**
 * Resolves the guest's modules against the kernel `version` installed under
 * `baseDir` (modprobe's -d) with modprobe.
 */
export async function resolveModules(version: string, baseDir = "/"): Promise<ModuleFile[]> {
  const moduleDir = join(baseDir, "lib/modules", version);
  let builtinText: string;
  let depText: string;
  try {
    builtinText = await readFile(join(moduleDir, "modules.builtin"), "utf8");
    depText = await readFile(join(moduleDir, "modules.dep"), "utf8");
  } catch (err) {
    throw failedPrecondition(`kernel modules of ${version} not found in ${moduleDir}: install linux-image-cloud-amd64`, err);
  }
  const depends = new Map<string, DependsLine[]>();
  for (const stage of MODULE_STAGES) {
    for (const name of GUEST_MODULES[stage]) {
      try {
        const { stdout } = await run("modprobe", ["-S", version, "-d", baseDir, "--show-depends", name], { debianPackage: "kmod" });
        depends.set(name, parseShowDepends(stdout));
      } catch (err) {
        throw wrap(`resolve module ${name} of kernel ${version}`, err, "FailedPrecondition");
      }
    }
  }
  return orderModules(GUEST_MODULES, depends, parseModulesBuiltin(builtinText), parseModulesDep(depText));
}
