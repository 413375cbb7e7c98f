/**
 * The files a configuration names, looked at on the host before anything
 * starts (`vmpod serve`, `vmpod check`): QEMU, the guest kernel, initrd and
 * root image when a VM handler is configured, virtiofsd when the shared
 * filesystem is virtio-fs, the OCI runtime binary of each `oci` handler.
 * Each problem names the file, the line and the key to fix.
 */
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import type { Loaded } from "./load.js";

export type FileNeed = "file" | "executable";

/** How a path is looked at; tests give their own. */
export interface PathProbe {
  /** What is wrong with `path` for `need` ("not found", "not executable"), or undefined when nothing is. */
  problemWith(path: string, need: FileNeed): Promise<string | undefined>;
}

export const hostPathProbe: PathProbe = {
  async problemWith(path, need) {
    let info;
    try {
      info = await stat(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      return code === "ENOENT" || code === "ENOTDIR" ? "not found" : `cannot be looked at (${code ?? "error"})`;
    }
    if (!info.isFile()) return "not a regular file";
    try {
      await access(path, need === "executable" ? constants.X_OK : constants.R_OK);
    } catch {
      return need === "executable" ? "not executable" : "not readable";
    }
    return undefined;
  },
};

export interface FileRequirement {
  /** The key naming the file. */
  readonly key: string;
  readonly what: string;
  readonly path: string;
  readonly need: FileNeed;
  /** Why it is needed ("the vm handler vmpod"). */
  readonly neededBy: string;
}

/** The files the configured handlers need. */
export function requiredFiles(loaded: Loaded): FileRequirement[] {
  const { hypervisor, runtime } = loaded.config;
  const out: FileRequirement[] = [];
  const handlers = Object.entries(runtime.handlers);
  const vm = handlers.filter(([, h]) => h.type === "vm").map(([name]) => name);
  if (vm.length > 0) {
    const neededBy = `the vm handler${vm.length > 1 ? "s" : ""} ${vm.join(", ")}`;
    out.push(
      { key: "hypervisor.qemu.path", what: "QEMU binary", path: hypervisor.path, need: "executable", neededBy },
      { key: "hypervisor.qemu.kernel", what: "guest kernel", path: hypervisor.kernel, need: "file", neededBy },
      { key: "hypervisor.qemu.initrd", what: "guest initrd", path: hypervisor.initrd, need: "file", neededBy },
      { key: "hypervisor.qemu.image", what: "guest root image", path: hypervisor.image, need: "file", neededBy },
    );
    if (hypervisor.sharedFs === "virtio-fs") {
      out.push({ key: "hypervisor.qemu.virtio_fs_daemon", what: "virtiofsd", path: hypervisor.virtioFsDaemon, need: "executable", neededBy: 'shared_fs = "virtio-fs"' });
    }
  }
  for (const [name, h] of handlers) {
    if (h.type === "oci") out.push({ key: `runtime.handlers.${name}.runtime_path`, what: "OCI runtime", path: h.runtimePath, need: "executable", neededBy: `the oci handler ${name}` });
  }
  return out;
}

export interface FileProblem {
  readonly requirement: FileRequirement;
  /** "FILE:LINE: KEY: WHAT PATH is not found (needed by ...)"; "(default)" marks a key the file does not set. */
  readonly message: string;
}

/** Every missing or unusable file the configuration needs. */
export async function findFileProblems(loaded: Loaded, probe: PathProbe = hostPathProbe): Promise<FileProblem[]> {
  const found = await Promise.all(
    requiredFiles(loaded).map(async (r): Promise<FileProblem | undefined> => {
      const problem = await probe.problemWith(r.path, r.need);
      return problem === undefined ? undefined : { requirement: r, message: `${placeOf(loaded, r.key)}: ${r.what} ${r.path} is ${problem} (needed by ${r.neededBy})` };
    }),
  );
  return found.filter((p): p is FileProblem => p !== undefined);
}

/** One line per missing or unusable file (findFileProblems' messages). */
export async function hostFileProblems(loaded: Loaded, probe: PathProbe = hostPathProbe): Promise<string[]> {
  return (await findFileProblems(loaded, probe)).map((p) => p.message);
}

/** "file:line: key", or "file: key (default)" when the file does not set it. */
export function placeOf(loaded: Loaded, key: string): string {
  const line = loaded.lines.writtenAt(key);
  return line !== undefined ? `${loaded.source}:${line}: ${key}` : `${loaded.source}: ${key} (default)`;
}
