/**
 * density: how many idle pods a node holds, and how well pods start
 * together, with pods restored from a VM template ([factory]
 * enable_template, q35) by the engine, each running a `sleep` container.
 *
 *   idle_pss_mb        the average PSS of a pod's host processes (QEMU and
 *                      its virtiofsd, /proc/PID/smaps_rollup) over 10 idle
 *                      pods, once they have settled; floor: the guest's RAM
 *                      size (what a VM without sharing or holes costs at
 *                      least once touched). Goal ≤ 60 MiB. The note also
 *                      gives the bytes allocated to each pod's copy of the
 *                      template's memory (a memfd), which PSS shows only
 *                      where QEMU has mapped it.
 *   parallel10_ratio   the wall time of 10 pods started at once over one
 *                      pod's start time, in the same run. Goal ≤ 5.
 *
 * The template is built first, untimed. Every pod is stopped and every
 * file removed afterwards.
 */
import { mkdtemp, readdir, readFile, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS, ensureGuestImage } from "../guest/build/index.js";
import { silentLogger } from "../src/common/log.js";
import { processesMentioning } from "../src/common/processes.js";
import { sleep } from "../src/common/time.js";
import { defaultConfig } from "../src/config/defaults.js";
import type { Config } from "../src/config/types.js";
import { chooseAccel, hostTscKhz } from "../src/hypervisor/accel.js";
import { QemuHypervisor } from "../src/hypervisor/qemu.js";
import { VmEngine } from "../src/sandbox/engine.js";
import { sandboxPaths } from "../src/sandbox/layout.js";
import type { PodVm } from "../src/sandbox/pod-vm.js";
import { makeBusyboxRootfs } from "../src/sandbox/smoke.js";
import { emit } from "./report.js";

const PODS = 10;
/** How long idle pods are left before their memory is read. */
const SETTLE_MS = 10_000;

interface Pss {
  pss: number;
  anon: number;
  shmem: number;
  file: number;
}

export async function run(): Promise<void> {
  const image = await ensureGuestImage({ log: (m) => process.stderr.write(`guest image: ${m}\n`) });
  const scratch = await mkdtemp(join(tmpdir(), "vmpod-bench-density-"));
  const vms: PodVm[] = [];
  try {
    const base = defaultConfig(image.dir);
    const config: Config = {
      ...base,
      runtime: { ...base.runtime, stateRoot: join(scratch, "state") },
      hypervisor: { ...base.hypervisor, machineType: "q35" },
      factory: { ...base.factory, enableTemplate: true, templatePath: join(scratch, "templates") },
    };
    const accel = await chooseAccel(config.hypervisor.accel);
    const tscKhz = accel.accel === "tcg" ? await hostTscKhz() : undefined;
    const engine = new VmEngine(config, { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS }, () => new QemuHypervisor(), silentLogger);
    if (!(await engine.warmUp())) throw new Error("density: the vm template could not be built");
    const start = async (id: string): Promise<PodVm> => {
      // A root filesystem each: crun writes into it (/dev links), and pods start at once.
      const rootfs = await makeBusyboxRootfs(join(scratch, "rootfs", id));
      const vm = await engine.boot({ id, hostname: "bench" });
      vms.push(vm);
      await vm.createContainer("c", { kind: "dir", path: rootfs }, {
        ociVersion: "1.1.0",
        process: { args: ["sleep", "100000"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
        linux: { namespaces: [{ type: "pid" }, { type: "mount" }], cgroupsPath: "" },
      });
      await vm.startContainer("c");
      return vm;
    };

    // One pod alone, then PODS at once: the second set stays up for the memory reading.
    let t = performance.now();
    const single = await start("single");
    const oneMs = performance.now() - t;
    await single.stop();
    vms.length = 0;
    t = performance.now();
    const ids = Array.from({ length: PODS }, (_, i) => `idle${i}`);
    const idle = await Promise.all(ids.map(start));
    const allMs = performance.now() - t;

    await sleep(SETTLE_MS);
    const pods: Pss[] = [];
    let copies = 0;
    for (const vm of idle) {
      pods.push(await podPss(sandboxPaths(config.runtime.stateRoot, vm.id).root));
      copies += await guestRamAllocated(vm.qemuPid);
    }
    const avg = (f: (p: Pss) => number) => pods.reduce((s, p) => s + f(p), 0) / pods.length / 1024;
    emit({
      bench: "density",
      metric: "idle_pss_mb",
      value: avg((p) => p.pss),
      unit: "MiB",
      floor: config.hypervisor.defaultMemory,
      note:
        `goal ≤ 60 MiB; average over ${PODS} idle pods restored from a template under ${accel.accel} (QEMU + virtiofsd), ${SETTLE_MS / 1000} s after start; ` +
        `Pss_Anon ${avg((p) => p.anon).toFixed(1)}, Pss_Shmem ${avg((p) => p.shmem).toFixed(1)}, Pss_File ${avg((p) => p.file).toFixed(1)} MiB; ` +
        `per pod: [${pods.map((p) => Math.round(p.pss / 1024)).join(", ")}]; ` +
        `each pod's copy of the template's memory (a memfd) has ${(copies / PODS / 2 ** 20).toFixed(1)} MiB allocated, RAM whether mapped or not; floor: the guest's RAM`,
    });
    emit({
      bench: "density",
      metric: "parallel10_ratio",
      value: allMs / oneMs,
      unit: "ratio",
      note: `goal ≤ 5; ${PODS} pods started at once in ${Math.round(allMs)} ms, one alone in ${Math.round(oneMs)} ms, under ${accel.accel}, restored from a template`,
    });
  } finally {
    await Promise.allSettled(vms.map((vm) => vm.stop()));
    await rm(scratch, { recursive: true, force: true });
  }
}

/** The summed PSS (KiB) of the processes naming the pod's directory: its QEMU and virtiofsd. */
async function podPss(podDir: string): Promise<Pss> {
  const total: Pss = { pss: 0, anon: 0, shmem: 0, file: 0 };
  const procs = await processesMentioning(podDir);
  if (procs.length === 0) throw new Error(`density: no process of ${podDir} found`);
  for (const { pid } of procs) {
    const text = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0);
    total.pss += field("Pss");
    total.anon += field("Pss_Anon");
    total.shmem += field("Pss_Shmem");
    total.file += field("Pss_File");
  }
  return total;
}

/** Bytes allocated to the memfd holding a restored VM's RAM, found among QEMU's descriptors. */
async function guestRamAllocated(qemuPid: number): Promise<number> {
  const dir = `/proc/${qemuPid}/fd`;
  for (const fd of await readdir(dir)) {
    const target = await readlink(join(dir, fd)).catch(() => "");
    if (target.startsWith("/memfd:vmpod-guest-ram")) return (await stat(join(dir, fd))).blocks * 512;
  }
  return 0;
}
