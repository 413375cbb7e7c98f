/**
 * Host mounts the runtime makes (bind mounts into a VM's shared directory),
 * through util-linux mount(8), and their removal.
 */
import { readFile } from "node:fs/promises";
import { run } from "./exec.js";

export async function bindMount(source: string, target: string, options: { readonly?: boolean } = {}): Promise<void> {
  await run("mount", ["--bind", source, target]);
  if (options.readonly) {
    try {
      await run("mount", ["-o", "remount,bind,ro", target]);
    } catch (err) {
      await unmount(target);
      throw err;
    }
  }
}

/** Makes `dir` a mount point whose later submounts propagate to copies of it (virtiofsd's namespace). */
export async function makeSharedMountPoint(dir: string): Promise<void> {
  await run("mount", ["--bind", dir, dir]);
  await run("mount", ["--make-shared", dir]);
}

/** Lazily unmounts `target` and everything below it; nothing mounted is not an error. */
export async function unmountTree(target: string): Promise<void> {
  const points = (await mountPoints()).filter((p) => p === target || p.startsWith(target + "/"));
  for (const p of points.sort((a, b) => b.length - a.length)) await unmount(p);
}

export async function unmount(target: string): Promise<void> {
  try {
    await run("umount", ["-l", target]);
  } catch (err) {
    if (!(await mountPoints()).includes(target)) return;
    throw err;
  }
}

/** Every mount point of this mount namespace. */
export async function mountPoints(): Promise<string[]> {
  const text = await readFile("/proc/self/mountinfo", "utf8");
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => decodeMountPath(l.split(" ")[4] ?? ""));
}

function decodeMountPath(p: string): string {
  return p.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}
