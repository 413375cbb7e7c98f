/**
 * The root image: a read-only erofs file shared by every VM. Laid out
 * merged-/usr (bin, sbin, lib, lib64 are symlinks into /usr), staged in a
 * directory, then packed with mkfs.erofs.
 */
import { chmod, copyFile, mkdir, open, symlink, writeFile } from "node:fs/promises";
import { basename, dirname, join, posix } from "node:path";
import { run } from "./exec.js";
import type { GuestSources } from "./inputs.js";

export type ErofsCompression = "none" | "lz4" | "lz4hc";

/** Where the agent and everything vmpod puts in the guest live. */
export const GUEST_LIB_DIR = "/usr/lib/vmpod";

/** The root image's size is a multiple of this, so it can be mapped as DAX (virtio-pmem). */
export const ROOT_IMAGE_ALIGN = 2 * 1024 * 1024;

/** Top-level symlinks of the merged-/usr layout, and the writable files that live in /run. */
const SYMLINKS: Readonly<Record<string, string>> = {
  bin: "usr/bin",
  sbin: "usr/sbin",
  lib: "usr/lib",
  lib64: "usr/lib64",
  "var/run": "../run",
  "var/tmp": "../tmp",
  "etc/mtab": "../proc/self/mounts",
  "etc/hostname": "../run/vmpod/etc/hostname",
  "etc/hosts": "../run/vmpod/etc/hosts",
  "etc/resolv.conf": "../run/vmpod/etc/resolv.conf",
};

/** Empty directories: mount points and homes. */
const DIRS = ["dev", "proc", "sys", "run", "tmp", "mnt", "root", "etc", "var", "usr/bin", "usr/sbin", "usr/lib", "usr/lib64"];

const ETC: Readonly<Record<string, string>> = {
  passwd: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
  group: "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
  "nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
  // Mounted by the root image's init with one `mount -a`.
  fstab: [
    "devpts /dev/pts devpts nosuid,noexec,gid=5,mode=0620,ptmxmode=0666 0 0",
    "shm /dev/shm tmpfs nosuid,nodev,mode=1777 0 0",
    "run /run tmpfs nosuid,nodev,mode=0755 0 0",
    "tmp /tmp tmpfs nosuid,nodev,mode=1777 0 0",
    "cgroup2 /sys/fs/cgroup cgroup2 nosuid,nodev,noexec 0 0",
    "",
  ].join("\n"),
};

/** busybox applets not linked: /sbin/init is vmpod's own. */
const SKIPPED_APPLETS = new Set(["init", "linuxrc"]);

/**
 * Where a host file goes in the merged-/usr image: /lib/x → usr/lib/x,
 * /lib64/x → usr/lib64/x, /bin/x → usr/bin/x, /sbin/x → usr/sbin/x; /usr/...
 * stays. Returned relative to the image root.
 */
export function imagePath(hostPath: string): string {
  const clean = posix.normalize(hostPath).replace(/^\/+/, "");
  const merged = /^(bin|sbin|lib|lib64)\/(.*)$/.exec(clean);
  return merged ? `usr/${merged[1]}/${merged[2]}` : clean;
}

/**
 * The busybox applet links of the image, from `busybox --list-full` lines,
 * mapped into the merged-/usr layout; a name already taken by a real file
 * (node, crun) or by an earlier link is skipped.
 */
export function appletLinks(listFull: readonly string[], taken: ReadonlySet<string>): string[] {
  const links: string[] = [];
  const seen = new Set(taken);
  for (const line of listFull) {
    if (SKIPPED_APPLETS.has(basename(line))) continue;
    const path = imagePath(line);
    if (seen.has(path)) continue;
    seen.add(path);
    links.push(path);
  }
  return links;
}

/**
 * node's flags for the agent (NODE_FLAGS in init.conf). `--jitless`: under TCG
 * every piece of machine code V8 generates is translated again by QEMU, and
 * V8's interpreter alone started the agent about 0.5 s sooner (the evaluation
 * of the bundle, mostly protobuf-es building the agent API's descriptors, went
 * from ~0.9 s to ~0.35 s; guest/README.md). It also turns WebAssembly off,
 * which the agent does not use; `--no-expose-wasm` says so, or node warns on
 * every start.
 */
export const AGENT_NODE_FLAGS: readonly string[] = ["--jitless", "--no-expose-wasm"];

/** The shell variables the root image's init sources from init.conf. */
export function rootInitConfig(sources: Pick<GuestSources, "kernel" | "modules">): string {
  const files = (stage: string) =>
    sources.modules
      .filter((m) => m.stage === stage)
      .map((m) => basename(m.path))
      .join(" ");
  return [
    "# Written by the vmpod guest build.",
    `KERNEL_VERSION="${sources.kernel.version}"`,
    `MODULES_AGENT="${files("agent")}"`,
    `MODULES_LATER="${files("later")}"`,
    `NODE_FLAGS="${AGENT_NODE_FLAGS.join(" ")}"`,
    "",
  ].join("\n");
}

/** Fills `stage` (an empty directory) with the root image's tree. */
export async function stageRoot(stage: string, sources: GuestSources, imageInfo: Readonly<Record<string, string>>): Promise<void> {
  // copyFile keeps the source's permission bits.
  const put = async (path: string, from: string) => {
    const target = join(stage, path);
    await mkdir(dirname(target), { recursive: true });
    await copyFile(from, target);
  };
  const write = async (path: string, data: string, mode = 0o644) => {
    const target = join(stage, path);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, data, { mode });
  };
  for (const dir of DIRS) await mkdir(join(stage, dir), { recursive: true });
  for (const [path, target] of Object.entries(SYMLINKS)) {
    await mkdir(dirname(join(stage, path)), { recursive: true });
    await symlink(target, join(stage, path));
  }
  for (const [name, text] of Object.entries(ETC)) await write(`etc/${name}`, text);

  await put("usr/bin/busybox", sources.busybox.path);
  await put("usr/bin/node", sources.node.path);
  await put("usr/bin/crun", sources.crun.path);
  for (const lib of sources.libraries) await put(imagePath(lib), lib);
  const taken = new Set(["usr/bin/busybox", "usr/bin/node", "usr/bin/crun", "usr/sbin/init"]);
  for (const link of appletLinks(sources.busybox.applets, taken)) {
    await mkdir(dirname(join(stage, link)), { recursive: true });
    await symlink("/usr/bin/busybox", join(stage, link));
  }
  await put("usr/sbin/init", sources.initScripts.root);
  await chmod(join(stage, "usr/sbin/init"), 0o755);

  const lib = GUEST_LIB_DIR.slice(1);
  await write(`${lib}/agent.js`, sources.agent.code);
  // The bundle is CommonJS whatever the nearest package.json says.
  await write(`${lib}/package.json`, '{ "type": "commonjs" }\n');
  for (const file of sources.koffi.files) await put(`${lib}/node_modules/koffi/${file}`, join(sources.koffi.packageDir, file));
  await write(`${lib}/init.conf`, rootInitConfig(sources));
  await write(`${lib}/image.json`, JSON.stringify(imageInfo, null, 2) + "\n");
  for (const module of sources.modules.filter((m) => m.stage !== "boot")) {
    await put(`usr/lib/modules/${sources.kernel.version}/${basename(module.path)}`, module.path);
  }
}

/**
 * Packs `stage` into the erofs image `output`: owned by root, timestamps and
 * UUID fixed (the same inputs give the same image), padded to
 * ROOT_IMAGE_ALIGN. Returns mkfs.erofs's version line.
 */
export async function packErofs(
  mkfsErofs: string,
  stage: string,
  output: string,
  compression: ErofsCompression,
  uuid: string,
): Promise<string> {
  const args = ["-T0", "--all-root", "-U", uuid, "-x-1"];
  if (compression !== "none") args.push(`-z${compression}`);
  const { stdout, stderr } = await run(mkfsErofs, [...args, output, stage], { debianPackage: "erofs-utils" });
  const version = /^mkfs\.erofs\s+(\S+)/m.exec(stdout + "\n" + stderr)?.[1] ?? "unknown";
  const fh = await open(output, "r+");
  try {
    const { size } = await fh.stat();
    const padded = Math.ceil(size / ROOT_IMAGE_ALIGN) * ROOT_IMAGE_ALIGN;
    if (padded !== size) await fh.truncate(padded);
  } finally {
    await fh.close();
  }
  return version;
}

/** A UUID (8-4-4-4-12) made from the first 32 hex digits of `hash`. */
export function uuidFromHash(hash: string): string {
  const h = hash.slice(0, 32).padEnd(32, "0");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
