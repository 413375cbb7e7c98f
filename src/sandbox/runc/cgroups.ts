/**
 * A host container's cgroup, as the runc handler reads it. This host runs
 * cgroup v1 (hybrid: v2 mounted without controllers), so a container's
 * `linux.cgroupsPath` (cgroupfs form, "/vmpod/<pod>/<container>") is a
 * directory in each controller's hierarchy:
 *
 *   cpuacct/<path>/cpuacct.usage           CPU time, ns
 *   memory/<path>/memory.usage_in_bytes    usage (page cache included)
 *   memory/<path>/memory.limit_in_bytes    limit (a huge number when none)
 *   memory/<path>/memory.stat              counters (cache, rss, inactive_file, pgfault, ...)
 *   memory/<path>/memory.oom_control       oom_kill, read by the supervisor at exit
 *   pids/<path>/pids.current               tasks
 *
 * On a pure cgroup v2 host the same figures come from cpu.stat
 * (usage_usec), memory.current, memory.max, memory.stat and pids.current.
 */
import { readFile, rmdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../common/errors.js";
import type { ContainerUsage } from "../controller.js";

const V1_CONTROLLERS = ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "systemd"];

/** Checks a cgroupfs path: absolute, no "..", no systemd "slice:prefix:name" form. */
export function checkCgroupsPath(path: string): void {
  if (!path.startsWith("/") || path.includes(":") || path.split("/").includes("..")) {
    throw new VmpodError("InvalidArgument", `cgroups path ${JSON.stringify(path)} is not a cgroupfs path`);
  }
}

export class Cgroups {
  private v2: Promise<boolean> | undefined;

  constructor(readonly root = "/sys/fs/cgroup") {}

  /** True on a pure cgroup v2 host. */
  isV2(): Promise<boolean> {
    this.v2 ??= stat(join(this.root, "cgroup.controllers")).then(
      () => true,
      () => false,
    );
    return this.v2;
  }

  /** The memory controller's directory of a cgroup (v1), where memory.oom_control lives. */
  memoryDir(path: string): string {
    return join(this.root, "memory", path);
  }

  async usage(path: string): Promise<ContainerUsage> {
    try {
      return (await this.isV2()) ? await this.usageV2(path) : await this.usageV1(path);
    } catch (err) {
      throw new VmpodError("NotFound", `cgroup ${path} cannot be read (is the container running?)`, { cause: err });
    }
  }

  private async usageV1(path: string): Promise<ContainerUsage> {
    const mem = join(this.root, "memory", path);
    const [cpu, usage, limit, statText, pids] = await Promise.all([
      readFile(join(this.root, "cpuacct", path, "cpuacct.usage"), "utf8"),
      readFile(join(mem, "memory.usage_in_bytes"), "utf8"),
      readFile(join(mem, "memory.limit_in_bytes"), "utf8"),
      readFile(join(mem, "memory.stat"), "utf8"),
      readFile(join(this.root, "pids", path, "pids.current"), "utf8").catch(() => "0"),
    ]);
    return {
      cpuUsageNs: BigInt(cpu.trim()),
      memoryUsageBytes: BigInt(usage.trim()),
      memoryLimitBytes: BigInt(limit.trim()),
      memoryStats: parseStat(statText),
      pids: BigInt(pids.trim() || "0"),
    };
  }

  private async usageV2(path: string): Promise<ContainerUsage> {
    const dir = join(this.root, path);
    const [cpuText, usage, limit, statText, pids] = await Promise.all([
      readFile(join(dir, "cpu.stat"), "utf8"),
      readFile(join(dir, "memory.current"), "utf8"),
      readFile(join(dir, "memory.max"), "utf8"),
      readFile(join(dir, "memory.stat"), "utf8"),
      readFile(join(dir, "pids.current"), "utf8").catch(() => "0"),
    ]);
    const cpu = parseStat(cpuText);
    return {
      cpuUsageNs: (cpu["usage_usec"] ?? 0n) * 1000n,
      memoryUsageBytes: BigInt(usage.trim()),
      memoryLimitBytes: limit.trim() === "max" ? 0n : BigInt(limit.trim()),
      memoryStats: parseStat(statText),
      pids: BigInt(pids.trim() || "0"),
    };
  }

  /**
   * Removes a cgroup directory the runtime left as a parent (runc removes a
   * container's own cgroup, not the directories above it), in every
   * hierarchy, while empty. Best effort: a busy or absent one is skipped.
   */
  async removeEmpty(path: string): Promise<void> {
    checkCgroupsPath(path);
    if (path === "/") return;
    const dirs = (await this.isV2()) ? [join(this.root, path)] : [...V1_CONTROLLERS.map((c) => join(this.root, c, path)), join(this.root, "unified", path)];
    await Promise.all(dirs.map((d) => rmdir(d).catch(() => undefined)));
  }
}

/** "key value" lines into a map of bigints. */
export function parseStat(text: string): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value !== undefined && /^\d+$/.test(value)) out[key] = BigInt(value);
  }
  return out;
}
