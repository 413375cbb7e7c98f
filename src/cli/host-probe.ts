/**
 * What `vmpod env` and `vmpod check` learn about the host, behind one
 * interface so that their tests can describe any host: programs' versions,
 * /dev/kvm and whether kvm_pvm provides it, devices, cgroups, the CNI
 * configuration and plugins, free space, file digests, the host itself.
 */
import { constants } from "node:fs";
import { access, open, readFile, readdir, stat, statfs } from "node:fs/promises";
import { cpus, machine, release, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { digestFile } from "../../guest/build/hash.js";
import { messageOf } from "../common/errors.js";
import { exists } from "../common/fs.js";
import { run } from "../common/exec.js";
import { hostPathProbe, type PathProbe } from "../config/host-files.js";
import type { Acceleration } from "../config/types.js";
import { chooseAccel, HOST_ACCEL_PATHS, type AccelChoice, type AccelProbePaths } from "../hypervisor/accel.js";
import { configFiles, loadNetworkList } from "../network/cni-config.js";

export interface KvmFacts {
  readonly present: boolean;
  /** Opens read-write. */
  readonly usable: boolean;
  /** Provided by kvm_pvm (nested, shadow paging): VMs make no progress under it. */
  readonly pvm: boolean;
}

export type CgroupVersion = "v1" | "hybrid" | "v2";

export interface CgroupFacts {
  readonly version: CgroupVersion;
  /** Controllers usable for containers: mounted v1 hierarchies, or the v2 root's cgroup.controllers. */
  readonly controllers: readonly string[];
}

export interface CniFacts {
  /** The configuration file used (the lexically first), if any. */
  readonly conflist?: string;
  readonly networkName?: string;
  /** Why the configuration cannot be used. */
  readonly error?: string;
  /** The plugin types the configuration names. */
  readonly plugins: readonly string[];
  /** Those of them found in none of the plugin directories. */
  readonly missingPlugins: readonly string[];
  /** How many plugin binaries the plugin directories hold. */
  readonly pluginBinaries: number;
}

export interface HostFacts {
  /** The host kernel's release (uname -r). */
  readonly kernel: string;
  /** uname -m. */
  readonly architecture: string;
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memoryBytes: number;
  readonly isRoot: boolean;
}

export interface HostProbe {
  readonly files: PathProbe;
  /** The first line a program prints for --version; throws when it does not run. */
  version(path: string): Promise<string>;
  kvm(): Promise<KvmFacts>;
  /** The acceleration a VM would get (chooseAccel); throws when `kvm` is required and unusable. */
  accel(requested: Acceleration): Promise<AccelChoice>;
  /** Whether a device node exists, and opens read-write. */
  device(path: string): Promise<{ readonly present: boolean; readonly usable: boolean }>;
  cgroups(): Promise<CgroupFacts>;
  cni(confDir: string, binDirs: readonly string[]): Promise<CniFacts>;
  /** Bytes available (statfs bavail) on the filesystem of `path`, or of its nearest existing parent (`at`). */
  freeSpace(path: string): Promise<{ readonly at: string; readonly bytes: number }>;
  /** Size in bytes, or undefined when the file is missing. */
  size(path: string): Promise<number | undefined>;
  sha256(path: string): Promise<string>;
  /** A file's text, or undefined when it cannot be read. */
  readText(path: string): Promise<string | undefined>;
  host(): Promise<HostFacts>;
}

export interface HostProbePaths {
  readonly accel: AccelProbePaths;
  readonly cgroupRoot: string;
  readonly procCgroups: string;
  readonly cpuinfo: string;
}

export const HOST_PROBE_PATHS: HostProbePaths = {
  accel: HOST_ACCEL_PATHS,
  cgroupRoot: "/sys/fs/cgroup",
  procCgroups: "/proc/cgroups",
  cpuinfo: "/proc/cpuinfo",
};

/** The real host; `paths` point elsewhere in tests. */
export function hostProbe(paths: HostProbePaths = HOST_PROBE_PATHS): HostProbe {
  return {
    files: hostPathProbe,
    async version(path) {
      const { stdout, stderr } = await run(path, ["--version"]);
      return ((stdout.trim() || stderr).split("\n")[0] ?? "").trim();
    },
    async kvm() {
      const dev = await this.device(paths.accel.devKvm);
      return { present: dev.present, usable: dev.usable, pvm: dev.present && (await exists(paths.accel.kvmPvmModule)) };
    },
    accel: (requested) => chooseAccel(requested, paths.accel),
    async device(path) {
      if (!(await exists(path))) return { present: false, usable: false };
      try {
        const fh = await open(path, constants.O_RDWR);
        await fh.close();
        return { present: true, usable: true };
      } catch {
        return { present: true, usable: false };
      }
    },
    cgroups: () => cgroupFacts(paths),
    cni: cniFacts,
    async freeSpace(path) {
      let at = path;
      while (!(await exists(at)) && dirname(at) !== at) at = dirname(at);
      const s = await statfs(at);
      return { at, bytes: s.bavail * s.bsize };
    },
    async size(path) {
      try {
        return (await stat(path)).size;
      } catch {
        return undefined;
      }
    },
    sha256: digestFile,
    async readText(path) {
      try {
        return await readFile(path, "utf8");
      } catch {
        return undefined;
      }
    },
    async host() {
      const cpuinfo = (await this.readText(paths.cpuinfo)) ?? "";
      return {
        kernel: release(),
        architecture: machine(),
        cpuModel: /^model name\s*:\s*(.*)$/m.exec(cpuinfo)?.[1]?.trim() ?? cpus()[0]?.model ?? "unknown",
        cpus: cpus().length,
        memoryBytes: totalmem(),
        isRoot: process.getuid?.() === 0,
      };
    },
  };
}

/**
 * v2: the root holds cgroup.controllers. Hybrid: v1 hierarchies with a
 * controller-less v2 tree at <root>/unified. Otherwise v1.
 */
async function cgroupFacts(paths: HostProbePaths): Promise<CgroupFacts> {
  const v2Controllers = join(paths.cgroupRoot, "cgroup.controllers");
  if (await exists(v2Controllers)) {
    const text = (await readFile(v2Controllers, "utf8")).trim();
    return { version: "v2", controllers: text === "" ? [] : text.split(/\s+/) };
  }
  const version: CgroupVersion = (await exists(join(paths.cgroupRoot, "unified", "cgroup.controllers"))) ? "hybrid" : "v1";
  let table = "";
  try {
    table = await readFile(paths.procCgroups, "utf8");
  } catch {
    // no cgroups at all
  }
  const controllers: string[] = [];
  for (const line of table.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const [name, hierarchy, , enabled] = line.trim().split(/\s+/);
    if (name !== undefined && hierarchy !== "0" && enabled === "1" && (await exists(join(paths.cgroupRoot, name)))) controllers.push(name);
  }
  return { version, controllers };
}

async function cniFacts(confDir: string, binDirs: readonly string[]): Promise<CniFacts> {
  const binaries = new Set<string>();
  for (const dir of binDirs) {
    let names: string[] = [];
    try {
      names = await readdir(dir);
    } catch {
      continue;
    }
    for (const name of names) {
      try {
        await access(join(dir, name), constants.X_OK);
        binaries.add(name);
      } catch {
        // not a plugin
      }
    }
  }
  const [first] = await configFiles(confDir).catch(() => []);
  if (first === undefined) return { plugins: [], missingPlugins: [], pluginBinaries: binaries.size };
  try {
    const list = await loadNetworkList(confDir);
    const plugins = list.plugins.map((p) => p.type);
    return { conflist: list.source, networkName: list.name, plugins, missingPlugins: plugins.filter((p) => !binaries.has(p)), pluginBinaries: binaries.size };
  } catch (err) {
    return { conflist: first, error: messageOf(err), plugins: [], missingPlugins: [], pluginBinaries: binaries.size };
  }
}
