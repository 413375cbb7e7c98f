/**
 * Host mounts the runtime makes (bind mounts and overlays into a VM's shared
 * directory), through util-linux mount(8), and their removal.
 */
import { readFile } from "node:fs/promises";
import { dirname, relative } from "node:path";
import { VmpodError } from "./errors.js";
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

/** What the kernel accepts as one mount's options (a page), less a margin. */
const MAX_MOUNT_DATA = 4000;

/**
 * Mounts an overlay of `lowerDirs` (uppermost first) with a writable
 * `upperDir` and its `workDir` at `target`. Long lower lists are given
 * relative to their common parent (the kernel resolves them against the
 * mounting process's working directory), which keeps many layers within the
 * page the options must fit in.
 */
export async function overlayMount(lowerDirs: readonly string[], upperDir: string, workDir: string, target: string): Promise<void> {
  if (lowerDirs.length === 0) throw new VmpodError("InvalidArgument", "an overlay needs at least one lower directory");
  for (const dir of [...lowerDirs, upperDir, workDir]) {
    if (/[,:\\]/.test(dir)) throw new VmpodError("InvalidArgument", `overlay directory ${JSON.stringify(dir)} holds a character mount options cannot carry`);
  }
  let lower = lowerDirs.join(":");
  let cwd: string | undefined;
  if (lower.length + upperDir.length + workDir.length + 40 > MAX_MOUNT_DATA) {
    cwd = commonParent(lowerDirs);
    lower = lowerDirs.map((d) => relative(cwd ?? "/", d)).join(":");
  }
  const data = `lowerdir=${lower},upperdir=${upperDir},workdir=${workDir}`;
  if (data.length > MAX_MOUNT_DATA) throw new VmpodError("InvalidArgument", `an overlay of ${lowerDirs.length} layers does not fit in one mount's options`);
  await run("mount", ["-t", "overlay", "overlay", "-o", data, target], cwd === undefined ? {} : { cwd });
}

function commonParent(paths: readonly string[]): string {
  let parts = dirname(paths[0] ?? "/").split("/");
  for (const p of paths.slice(1)) {
    const other = p.split("/");
    let i = 0;
    while (i < parts.length && parts[i] === other[i]) i++;
    parts = parts.slice(0, i);
  }
  return parts.join("/") || "/";
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
