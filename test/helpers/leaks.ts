/**
 * What a test may leave behind, looked at for real: processes whose command
 * line mentions the test's root, mounts under it, files in it.
 */
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { mountPoints } from "../../src/common/mount.js";

export interface Leftovers {
  readonly processes: string[];
  readonly mounts: string[];
  readonly files: string[];
}

/** Processes (pid and command line) whose command line contains `marker`. */
export async function processesMentioning(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = (await readFile(`/proc/${name}/cmdline`, "utf8")).replace(/\0/g, " ").trim();
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      if (/\) Z /.test(stat)) continue;
    } catch {
      continue;
    }
    if (cmdline.includes(marker)) found.push(`${name}: ${cmdline}`);
  }
  return found;
}

export async function leftovers(root: string): Promise<Leftovers> {
  const mounts = (await mountPoints()).filter((p) => p === root || p.startsWith(root + "/"));
  let files: string[] = [];
  try {
    // The layout's own top-level directories may stay, empty.
    files = (await readdir(root, { recursive: true })).filter((f) => f !== "sandboxes");
  } catch {
    files = [];
  }
  return { processes: await processesMentioning(root), mounts, files };
}

/** Waits briefly for processes to finish exiting, then asserts nothing is left under `root`. */
export async function assertNothingLeft(root: string): Promise<void> {
  let left = await leftovers(root);
  for (let i = 0; i < 50 && left.processes.length > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 100));
    left = await leftovers(root);
  }
  assert.deepEqual(left, { processes: [], mounts: [], files: [] }, `left behind under ${root}`);
}
