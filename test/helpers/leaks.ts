/**
 * What a test may leave behind, looked at for real: processes whose command
 * line mentions the test's root, mounts under it, files in it.
 */
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { mountPoints } from "../../src/common/mount.js";
import { processesMentioning as liveProcessesMentioning } from "../../src/common/processes.js";

export interface Leftovers {
  readonly processes: string[];
  readonly mounts: string[];
  readonly files: string[];
}

/** Processes ("pid: command line") whose command line contains `marker`. */
export async function processesMentioning(marker: string): Promise<string[]> {
  return (await liveProcessesMentioning(marker)).map((p) => `${p.pid}: ${p.cmdline}`);
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
