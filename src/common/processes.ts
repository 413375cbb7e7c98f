/** Host processes found by what their command line names, for cleaning up after a crash. */
import { readFile, readdir } from "node:fs/promises";

/** Live processes (zombies left out) whose command line contains `marker`, never this process. */
export async function processesMentioning(marker: string): Promise<{ pid: number; cmdline: string }[]> {
  const found: { pid: number; cmdline: string }[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${name}/cmdline`, "utf8")).replace(/\0/g, " ").trim();
      if (!cmdline.includes(marker)) continue;
      if (/\) Z /.test(await readFile(`/proc/${name}/stat`, "utf8"))) continue;
      found.push({ pid: Number(name), cmdline });
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function pidsMentioning(marker: string): Promise<number[]> {
  return (await processesMentioning(marker)).map((p) => p.pid);
}

/** SIGKILLs every process naming `marker` and waits (up to `timeoutMs`) for them to go. */
export async function killProcessesMentioning(marker: string, timeoutMs = 5000): Promise<number[]> {
  const pids = await pidsMentioning(marker);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && (await pidsMentioning(marker)).some((p) => pids.includes(p))) {
    await new Promise((r) => setTimeout(r, 50));
  }
  return pids;
}

/** Whether process `pid` exists (EPERM: it does, owned by another user). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
