/**
 * What a host process costs, read from /proc at scrape time: its resident
 * memory (VmRSS of /proc/PID/status) and the CPU time it has used (utime
 * and stime of /proc/PID/stat).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * Clock ticks per second in /proc/PID/stat: USER_HZ, 100 on every Linux
 * architecture vmpod runs on (the kernel fixes it for its ABI, whatever
 * its internal HZ).
 */
export const USER_HZ = 100;

export interface ProcessUsage {
  readonly rssBytes: number;
  readonly cpuSeconds: number;
}

/** VmRSS from /proc/PID/status, in bytes; undefined when absent (a kernel thread, a zombie). */
export function parseRssBytes(status: string): number | undefined {
  const m = /^VmRSS:\s+(\d+)\s+kB$/m.exec(status);
  return m ? Number(m[1]) * 1024 : undefined;
}

/** utime + stime from /proc/PID/stat, in seconds; undefined when the line does not parse. */
export function parseCpuSeconds(stat: string): number | undefined {
  // The command name, in parentheses, may hold spaces and parentheses: fields count from the last ')'.
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  const fields = stat.slice(close + 2).trim().split(/\s+/);
  // fields[0] is the state (field 3 of proc(5)); utime and stime are fields 14 and 15.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime) || fields.length < 13) return undefined;
  return (utime + stime) / USER_HZ;
}

/** The process's usage now; undefined when it is gone (or its files do not parse). */
export async function readProcessUsage(pid: number, procRoot = "/proc"): Promise<ProcessUsage | undefined> {
  let status: string;
  let stat: string;
  try {
    [status, stat] = await Promise.all([readFile(join(procRoot, String(pid), "status"), "utf8"), readFile(join(procRoot, String(pid), "stat"), "utf8")]);
  } catch {
    return undefined;
  }
  const rssBytes = parseRssBytes(status);
  const cpuSeconds = parseCpuSeconds(stat);
  if (rssBytes === undefined || cpuSeconds === undefined) return undefined;
  return { rssBytes, cpuSeconds };
}
