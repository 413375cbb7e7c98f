/**
 * A container's cgroup v2 files: resource usage for StatsContainer. A file
 * the kernel does not offer (a controller not enabled) reads as zero.
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

export interface CgroupStats {
  readonly cpu: {
    /** Nanoseconds. */
    readonly totalNs: bigint;
    readonly userNs: bigint;
    readonly systemNs: bigint;
    readonly periods: bigint;
    readonly throttledPeriods: bigint;
    readonly throttledNs: bigint;
  };
  readonly memory: {
    readonly usage: bigint;
    /** Highest usage seen (memory.peak). */
    readonly maxUsage: bigint;
    /** 0: no limit. */
    readonly limit: bigint;
    /** Times usage hit the limit (memory.events "max"). */
    readonly failcnt: bigint;
    readonly swapUsage: bigint;
    readonly swapLimit: bigint;
    /** memory.stat, as it is. */
    readonly stat: Readonly<Record<string, bigint>>;
  };
  readonly pids: { readonly current: bigint; readonly limit: bigint };
}

/** The cgroup's directory: `cgroupsPath` is relative to the root of the hierarchy. */
export function cgroupDir(root: string, cgroupsPath: string): string {
  return join(root, cgroupsPath);
}

export async function readStats(dir: string): Promise<CgroupStats> {
  const [cpuStat, memCurrent, memPeak, memMax, memEvents, swapCurrent, swapMax, memStat, pidsCurrent, pidsMax] = await Promise.all(
    ["cpu.stat", "memory.current", "memory.peak", "memory.max", "memory.events", "memory.swap.current", "memory.swap.max", "memory.stat", "pids.current", "pids.max"].map(
      (f) => readFile(join(dir, f), "utf8").catch(() => ""),
    ),
  );
  const cpu = parseKeyed(cpuStat ?? "");
  const us = (key: string) => (cpu[key] ?? 0n) * 1000n;
  return {
    cpu: {
      totalNs: us("usage_usec"),
      userNs: us("user_usec"),
      systemNs: us("system_usec"),
      periods: cpu["nr_periods"] ?? 0n,
      throttledPeriods: cpu["nr_throttled"] ?? 0n,
      throttledNs: us("throttled_usec"),
    },
    memory: {
      usage: parseValue(memCurrent ?? ""),
      maxUsage: parseValue(memPeak ?? ""),
      limit: parseValue(memMax ?? ""),
      failcnt: parseKeyed(memEvents ?? "")["max"] ?? 0n,
      swapUsage: parseValue(swapCurrent ?? ""),
      swapLimit: parseValue(swapMax ?? ""),
      stat: parseKeyed(memStat ?? ""),
    },
    pids: { current: parseValue(pidsCurrent ?? ""), limit: parseValue(pidsMax ?? "") },
  };
}

/** "key value" lines (cpu.stat, memory.stat, memory.events). */
export function parseKeyed(text: string): Record<string, bigint> {
  const out: Record<string, bigint> = {};
  for (const line of text.split("\n")) {
    const [key, value] = line.trim().split(/\s+/);
    if (key && value && /^\d+$/.test(value)) out[key] = BigInt(value);
  }
  return out;
}

/** A single number; "max" (no limit) and anything unreadable are 0. */
export function parseValue(text: string): bigint {
  const t = text.trim();
  return /^\d+$/.test(t) ? BigInt(t) : 0n;
}
