/**
 * rootfs-io: what a container's root filesystem costs inside a pod VM, for
 * each way image layers reach the guest, next to the same work on the host
 * over the same layers (an overlay on the host), in one run:
 *
 *   read_mb_s     cat a 64 MiB file of the image's lowest layer to /dev/null
 *   write_mb_s    dd 64 MiB into the container's writable layer, then sync
 *   untar_files_s tar -x of 2000 small files in 100 directories into the writable layer, then sync
 *
 * Modes: virtio-fs (an overlay on the host, shared into the guest) and
 * block (each layer an erofs disk on virtio-scsi, the overlay in the guest,
 * the writable layer in the guest's memory). Timed inside the guest by its
 * own clock (/proc/uptime, 10 ms steps; every step takes far longer
 * there), on the host step by step from outside. The peer of each
 * measurement is the host.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS, ensureGuestImage } from "../guest/build/index.js";
import { run as runCommand } from "../src/common/exec.js";
import { silentLogger } from "../src/common/log.js";
import { overlayMount, unmountTree } from "../src/common/mount.js";
import type { OciSpec } from "../src/common/oci-spec.js";
import { defaultConfig } from "../src/config/defaults.js";
import type { Config } from "../src/config/types.js";
import { chooseAccel, hostTscKhz } from "../src/hypervisor/accel.js";
import { QemuHypervisor } from "../src/hypervisor/qemu.js";
import type { Accel } from "../src/hypervisor/spec.js";
import { digestOf } from "../src/image/digest.js";
import { buildErofsLayer } from "../src/image/erofs-layer.js";
import type { RootfsLayers } from "../src/image/types.js";
import { VmEngine } from "../src/sandbox/engine.js";
import { readAll } from "../src/sandbox/process-io.js";
import { makeBusyboxRootfs } from "../src/sandbox/smoke.js";
import { emit } from "./report.js";

const BIG_MIB = 64;
const TREE_DIRS = 100;
const TREE_FILES_PER_DIR = 20;

/** Prints the three timings (seconds, as /proc/uptime gives them) of the work under root `$R`. */
const SCRIPT = `
set -e
t() { read up idle < /proc/uptime; echo $up; }
a=$(t); cat $R/data/big > /dev/null; b=$(t)
dd if=/dev/zero of=$R/written bs=1M count=${BIG_MIB} 2>/dev/null; sync; c=$(t)
mkdir $R/untar; tar -xf $R/data/tree.tar -C $R/untar; sync; d=$(t)
echo $a $b $c $d
`;

interface Timings {
  readMbS: number;
  writeMbS: number;
  untarFilesS: number;
}

function parse(out: string): Timings {
  const [a, b, c, d] = out.trim().split(/\s+/).map(Number) as [number, number, number, number];
  if (![a, b, c, d].every(Number.isFinite)) throw new Error(`rootfs-io: unexpected output ${JSON.stringify(out)}`);
  return { readMbS: BIG_MIB / (b - a), writeMbS: BIG_MIB / (c - b), untarFilesS: (TREE_DIRS * TREE_FILES_PER_DIR) / (d - c) };
}

export async function run(): Promise<void> {
  const image = await ensureGuestImage({ log: (m) => process.stderr.write(`guest image: ${m}\n`) });
  const root = await mkdtemp(join(tmpdir(), "vmpod-bench-rootfs-"));
  try {
    const layers = await makeLayers(join(root, "layers"));
    const host = await onHost(root, layers);
    const accel = await chooseAccel(defaultConfig(image.dir).hypervisor.accel);
    const results: { mode: string; t: Timings }[] = [];
    for (const mode of ["virtio-fs", "block"] as const) results.push({ mode, t: await inVm(root, image.dir, layers, mode, accel.accel) });
    process.stderr.write(`\nrootfs-io (${BIG_MIB} MiB read and written, ${TREE_DIRS * TREE_FILES_PER_DIR} files untarred)\n`);
    process.stderr.write(`  ${"where".padEnd(12)} ${"read MB/s".padStart(10)} ${"write MB/s".padStart(11)} ${"untar files/s".padStart(14)}\n`);
    for (const { mode, t } of [{ mode: "host", t: host }, ...results]) {
      process.stderr.write(`  ${mode.padEnd(12)} ${t.readMbS.toFixed(0).padStart(10)} ${t.writeMbS.toFixed(0).padStart(11)} ${t.untarFilesS.toFixed(0).padStart(14)}\n`);
    }
    for (const { mode, t } of results) {
      const note = `${mode} in a pod VM under ${accel.accel}; peer: the same on the host`;
      emit({ bench: "rootfs-io", metric: `${mode}.read_mb_s`, value: t.readMbS, unit: "MB/s", peer: host.readMbS, note });
      emit({ bench: "rootfs-io", metric: `${mode}.write_mb_s`, value: t.writeMbS, unit: "MB/s", peer: host.writeMbS, note });
      emit({ bench: "rootfs-io", metric: `${mode}.untar_files_s`, value: t.untarFilesS, unit: "files/s", peer: host.untarFilesS, note });
    }
  } finally {
    await unmountTree(root).catch(() => undefined);
    await rm(root, { recursive: true, force: true });
  }
}

/** Two layers: busybox, then the data (a big file and a tarball of a tree). */
async function makeLayers(dir: string): Promise<RootfsLayers> {
  const base = await makeBusyboxRootfs(join(dir, "base"));
  const data = join(dir, "data");
  await mkdir(join(data, "data"), { recursive: true });
  const big = Buffer.alloc(BIG_MIB << 20);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
  await writeFile(join(data, "data/big"), big);
  const tree = join(dir, "tree");
  for (let d = 0; d < TREE_DIRS; d++) {
    await mkdir(join(tree, `d${d}`), { recursive: true });
    for (let f = 0; f < TREE_FILES_PER_DIR; f++) await writeFile(join(tree, `d${d}`, `f${f}`), `file ${d}/${f}\n`.repeat(64));
  }
  await runCommand("tar", ["-cf", join(data, "data/tree.tar"), "-C", tree, "."]);
  await rm(tree, { recursive: true });
  const out = [];
  for (const layerDir of [base, data]) {
    const erofs = await buildErofsLayer(layerDir, `${layerDir}.erofs`);
    out.push({ diffId: digestOf(layerDir), dir: layerDir, blockImage: erofs.path });
  }
  return { imageId: digestOf("rootfs-io"), layers: out, upperDir: "", workDir: "" };
}

async function writable(root: string, name: string, layers: RootfsLayers): Promise<RootfsLayers> {
  const upperDir = join(root, name, "upper");
  const workDir = join(root, name, "work");
  await mkdir(upperDir, { recursive: true });
  await mkdir(workDir, { recursive: true });
  return { ...layers, upperDir, workDir };
}

async function onHost(root: string, layers: RootfsLayers): Promise<Timings> {
  const l = await writable(root, "host", layers);
  const merged = join(root, "host", "merged");
  await mkdir(merged);
  await overlayMount(l.layers.map((x) => x.dir).reverse(), l.upperDir, l.workDir, merged);
  try {
    await runCommand("sync", []);
    await runCommand("sh", ["-c", "echo 3 > /proc/sys/vm/drop_caches"]).catch(() => undefined);
    // Timed step by step from here: the host is too fast for /proc/uptime's 10 ms steps.
    const step = async (script: string): Promise<number> => {
      const start = performance.now();
      await runCommand("/bin/busybox", ["sh", "-c", script], { env: { R: merged, PATH: "/bin:/usr/bin" } });
      return (performance.now() - start) / 1000;
    };
    const read = await step("cat $R/data/big > /dev/null");
    const write = await step(`dd if=/dev/zero of=$R/written bs=1M count=${BIG_MIB} 2>/dev/null; sync`);
    const untar = await step("mkdir $R/untar; tar -xf $R/data/tree.tar -C $R/untar; sync");
    return { readMbS: BIG_MIB / read, writeMbS: BIG_MIB / write, untarFilesS: (TREE_DIRS * TREE_FILES_PER_DIR) / untar };
  } finally {
    await unmountTree(merged);
  }
}

async function inVm(root: string, assetDir: string, layers: RootfsLayers, mode: "virtio-fs" | "block", accel: Accel): Promise<Timings> {
  const base = defaultConfig(assetDir);
  const config: Config = {
    ...base,
    runtime: { ...base.runtime, stateRoot: join(root, `state-${mode}`) },
    hypervisor: { ...base.hypervisor, disableBlockDeviceUse: mode === "virtio-fs" },
  };
  const tscKhz = accel === "tcg" ? await hostTscKhz() : undefined;
  const engine = new VmEngine(config, { accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS }, () => new QemuHypervisor(), silentLogger);
  const vm = await engine.boot({ id: `io-${mode}`, hostname: "io" });
  try {
    const l = await writable(root, mode, layers);
    const spec: OciSpec = {
      ociVersion: "1.1.0",
      process: { args: ["sleep", "100000"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
      mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
      linux: { namespaces: [{ type: "pid" }, { type: "mount" }], cgroupsPath: "" },
    };
    await vm.createContainer("io", { kind: "layers", layers: l }, spec);
    await vm.startContainer("io");
    await runCommand("sh", ["-c", "echo 3 > /proc/sys/vm/drop_caches"]).catch(() => undefined);
    const io = await vm.exec("io", "bench", { args: ["sh", "-c", SCRIPT], env: ["PATH=/bin", "R="], cwd: "/", user: { uid: 0, gid: 0 } });
    const [out, code] = await Promise.all([readAll(io.stdout), io.wait()]);
    if (code !== 0) throw new Error(`rootfs-io: the script failed in the ${mode} VM (exit ${code}): ${out}`);
    return parse(out);
  } finally {
    await vm.stop();
  }
}
