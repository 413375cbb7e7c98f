/**
 * Everything a guest image is made of, found on the build host: the kernel and
 * its modules, busybox, node, crun and their libraries, koffi, the agent
 * bundle, the init scripts, mkfs.erofs. Also the list of what the image hash
 * covers.
 */
import { access, constants, readdir, realpath } from "node:fs/promises";
import { basename, delimiter, join, relative } from "node:path";
import { failedPrecondition, wrap } from "../../src/common/errors.js";
import { exists } from "../../src/common/fs.js";
import { bundleAgent, type AgentBundle } from "./agent-bundle.js";
import { isStaticProgram, sharedLibraries } from "./elf.js";
import { run } from "./exec.js";
import type { HashInput } from "./hash.js";
import { findKoffi, type KoffiFiles } from "./koffi.js";
import { resolveModules, type ModuleFile } from "./modules.js";

export interface SourceOptions {
  readonly repoRoot: string;
  readonly agentEntry: string;
  /** A kernel image; default: the newest /boot/vmlinuz-*-cloud-amd64. */
  readonly kernel?: string;
  readonly nodeBinary?: string;
  readonly crun?: string;
  readonly busybox?: string;
}

export interface GuestSources {
  readonly repoRoot: string;
  readonly kernel: { readonly path: string; readonly version: string };
  readonly modules: readonly ModuleFile[];
  readonly busybox: { readonly path: string; readonly applets: readonly string[] };
  readonly node: { readonly path: string; readonly version: string };
  readonly crun: { readonly path: string; readonly version: string };
  /** Shared libraries and the dynamic loader of node, crun and koffi, each once. */
  readonly libraries: readonly string[];
  readonly koffi: KoffiFiles;
  readonly agent: AgentBundle & { readonly entry: string };
  readonly initScripts: { readonly initramfs: string; readonly root: string };
  readonly mkfsErofs: string;
  /** The builder's own sources (guest/build). */
  readonly builderFiles: readonly string[];
}

/** Kernel file names this build accepts from /boot. */
const KERNEL_FILE = /^vmlinuz-(\d[\w.+~-]*-cloud-amd64)$/;

/** The newest cloud kernel among the file names of /boot, or undefined. */
export function pickKernel(fileNames: readonly string[]): { file: string; version: string } | undefined {
  const kernels = fileNames.flatMap((file) => {
    const version = KERNEL_FILE.exec(file)?.[1];
    return version === undefined ? [] : [{ file, version }];
  });
  kernels.sort((a, b) => b.version.localeCompare(a.version, "en", { numeric: true }));
  return kernels[0];
}

async function findKernel(path: string | undefined): Promise<{ path: string; version: string }> {
  if (path !== undefined) {
    const version = /^vmlinuz-(.+)$/.exec(basename(path))?.[1];
    if (version === undefined) throw failedPrecondition(`cannot tell the kernel version of ${path} (expected vmlinuz-VERSION)`);
    if (!(await exists(path))) throw failedPrecondition(`kernel ${path} does not exist`);
    return { path, version };
  }
  const picked = pickKernel(await readdir("/boot").catch(() => []));
  if (picked === undefined) throw failedPrecondition("no /boot/vmlinuz-*-cloud-amd64: install the Debian package linux-image-cloud-amd64");
  return { path: join("/boot", picked.file), version: picked.version };
}

/** The absolute path of an executable, searched in PATH and the sbin directories. */
export async function which(name: string, debianPackage: string): Promise<string> {
  const dirs = [...(process.env["PATH"] ?? "").split(delimiter), "/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];
  for (const dir of dirs) {
    if (dir === "") continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // next directory
    }
  }
  throw failedPrecondition(`${name} not found: install the Debian package ${debianPackage}`);
}

async function program(path: string, debianPackage: string): Promise<string> {
  try {
    await access(path, constants.X_OK);
  } catch (err) {
    throw failedPrecondition(`${path} not found: install the Debian package ${debianPackage}`, err);
  }
  return path;
}

/** Collects every source of the image. Runs modprobe, ldd, crun --version and esbuild. */
export async function collectSources(options: SourceOptions): Promise<GuestSources> {
  const { repoRoot } = options;
  const kernel = await findKernel(options.kernel);
  const busybox = await program(options.busybox ?? "/bin/busybox", "busybox-static");
  if (!(await isStaticProgram(busybox))) throw failedPrecondition(`${busybox} is not statically linked: install the Debian package busybox-static`);
  const nodePath = await program(options.nodeBinary ?? process.execPath, "nodejs");
  const crunPath = await program(options.crun ?? "/usr/bin/crun", "crun");
  const mkfsErofs = await which("mkfs.erofs", "erofs-utils");

  const [modules, applets, nodeVersion, crunVersion, koffi, agent] = await Promise.all([
    resolveModules(kernel.version),
    run(busybox, ["--list-full"], { debianPackage: "busybox-static" }).then(({ stdout }) => stdout.split("\n").filter((l) => l !== "")),
    nodePath === process.execPath ? Promise.resolve(process.version) : run(nodePath, ["--version"], { debianPackage: "nodejs" }).then((r) => r.stdout.trim()),
    run(crunPath, ["--version"], { debianPackage: "crun" }).then((r) => /^crun version (\S+)/m.exec(r.stdout)?.[1] ?? "unknown"),
    findKoffi(repoRoot),
    bundleAgent(options.agentEntry, repoRoot),
  ]);

  const libraries: string[] = [];
  const koffiNative = koffi.files.filter((f) => f.endsWith(".node")).map((f) => join(koffi.packageDir, f));
  for (const binary of [nodePath, crunPath, ...koffiNative]) {
    try {
      for (const lib of await sharedLibraries(binary)) if (!libraries.includes(lib)) libraries.push(lib);
    } catch (err) {
      throw wrap(`find the libraries of ${binary}`, err, "FailedPrecondition");
    }
  }

  const buildDir = join(repoRoot, "guest/build");
  const builderFiles = (await readdir(buildDir))
    .filter((f) => f.endsWith(".ts"))
    .sort()
    .map((f) => join(buildDir, f));
  const initramfsScript = join(repoRoot, "guest/init/initramfs-init.sh");
  const rootScript = join(repoRoot, "guest/init/root-init.sh");
  for (const script of [initramfsScript, rootScript]) {
    if (!(await exists(script))) throw failedPrecondition(`guest init script ${script} is missing`);
  }
  return {
    repoRoot,
    kernel,
    modules,
    busybox: { path: busybox, applets },
    node: { path: nodePath, version: nodeVersion },
    crun: { path: crunPath, version: crunVersion },
    libraries,
    koffi,
    agent: { ...agent, entry: options.agentEntry },
    initScripts: { initramfs: initramfsScript, root: rootScript },
    mkfsErofs: await realpath(mkfsErofs),
    builderFiles,
  };
}

/**
 * What the image hash covers: every file that goes into the image (by its
 * role or its place in the image), the agent's sources and bundle, the
 * builder's own sources, mkfs.erofs, and the build settings.
 */
export function hashInputsOf(sources: GuestSources, settings: Readonly<Record<string, string>>): HashInput[] {
  const rel = (path: string) => relative(sources.repoRoot, path);
  const inputs: HashInput[] = [
    { label: "kernel", path: sources.kernel.path },
    { label: "kernel-version", data: sources.kernel.version },
    { label: "busybox", path: sources.busybox.path },
    { label: "node", path: sources.node.path },
    { label: "crun", path: sources.crun.path },
    { label: "mkfs.erofs", path: sources.mkfsErofs },
    { label: "agent-bundle", data: sources.agent.code },
    { label: "init:initramfs", path: sources.initScripts.initramfs },
    { label: "init:root", path: sources.initScripts.root },
  ];
  for (const m of sources.modules) inputs.push({ label: `module:${m.stage}:${m.name}`, path: m.path });
  for (const lib of sources.libraries) inputs.push({ label: `library:${lib}`, path: lib });
  for (const file of sources.koffi.files) inputs.push({ label: `koffi:${file}`, path: join(sources.koffi.packageDir, file) });
  // Named as the bundle names them: an agent outside the repository hashes the same wherever it lies.
  for (const file of sources.agent.inputs) inputs.push({ label: `agent-source:${relative(sources.agent.workingDir, file)}`, path: file });
  for (const file of sources.builderFiles) inputs.push({ label: `builder:${rel(file)}`, path: file });
  for (const [key, value] of Object.entries(settings)) inputs.push({ label: `setting:${key}`, data: value });
  return inputs;
}
