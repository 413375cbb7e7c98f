/**
 * vm-start: how long a cold pod VM takes to answer its agent, and what an
 * idle one costs in host memory, each next to a floor measured in the same
 * run: bare QEMU booting the same kernel, initramfs and root image up to the
 * moment the guest's init would start the agent (where, in floor mode, it
 * stops the VM instead).
 *
 *   cold_start_ms  start VM → agent answers Check        floor: start → VM stopped at the floor
 *   idle_rss_mb    QEMU + virtiofsd RSS, idle VM with one idle container
 *                                                        floor: peak RSS of the same during a floor boot
 *   idle_pss_mb    the same as PSS: virtiofsd maps the guest's memory too, so
 *                  RSS counts those pages twice and PSS once
 */
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS, ensureGuestImage, FLOOR_PARAM } from "../guest/build/index.js";
import { silentLogger } from "../src/common/log.js";
import { defaultConfig } from "../src/config/defaults.js";
import type { Config } from "../src/config/types.js";
import { chooseAccel, hostTscKhz } from "../src/hypervisor/accel.js";
import { QemuHypervisor } from "../src/hypervisor/qemu.js";
import { VmEngine, type HostFacts } from "../src/sandbox/engine.js";
import { makeBusyboxRootfs } from "../src/sandbox/smoke.js";
import { emit, median } from "./report.js";

const RUNS = Number(process.env.VMPOD_BENCH_RUNS ?? 3);

export async function run(): Promise<void> {
  const image = await ensureGuestImage({ log: (m) => process.stderr.write(`guest image: ${m}\n`) });
  const root = await mkdtemp(join(tmpdir(), "vmpod-bench-"));
  try {
    const base = defaultConfig(image.dir);
    const config: Config = { ...base, runtime: { ...base.runtime, stateRoot: root } };
    const accel = await chooseAccel(config.hypervisor.accel);
    process.stderr.write(`vm-start: ${accel.reason}; ${RUNS} runs of each\n`);
    const tscKhz = accel.accel === "tcg" ? await hostTscKhz() : undefined;
    const host: HostFacts = { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS };
    const engine = new VmEngine(config, host, () => new QemuHypervisor(), silentLogger);

    const cold: number[] = [];
    const floor: number[] = [];
    const floorRss: number[] = [];
    const floorPss: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      const f = await floorBoot(engine, `floor${i}`);
      floor.push(f.ms);
      floorRss.push(f.peak.rss);
      floorPss.push(f.peak.pss);
      const vm = await engine.boot({ id: `cold${i}`, hostname: "bench" });
      cold.push(vm.timings.prepareMs + vm.timings.vmStartMs + vm.timings.agentMs);
      await vm.stop();
    }
    emit({ bench: "vm-start", metric: "cold_start_ms", value: median(cold), unit: "ms", floor: median(floor), note: `median of ${RUNS}, ${accel.accel}` });

    const rootfs = await makeBusyboxRootfs(join(root, "rootfs"));
    const vm = await engine.boot({ id: "idle", hostname: "bench" });
    try {
      await vm.createContainer("idle", { kind: "dir", path: rootfs }, {
        ociVersion: "1.1.0",
        process: { args: ["sleep", "100000"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
        linux: { namespaces: [{ type: "pid" }, { type: "mount" }] },
      });
      await vm.startContainer("idle");
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const mem = await memoryOf(vm.paths.vmDir);
      const note = `${config.hypervisor.defaultMemory} MiB guest; floor is the peak during a floor boot`;
      emit({ bench: "vm-start", metric: "idle_rss_mb", value: mem.rss, unit: "MiB", floor: median(floorRss), note });
      emit({ bench: "vm-start", metric: "idle_pss_mb", value: mem.pss, unit: "MiB", floor: median(floorPss), note });
    } finally {
      await vm.stop();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** A bare boot of the same VM, stopped by the guest's init where it would start the agent. */
async function floorBoot(engine: VmEngine, id: string): Promise<{ ms: number; peak: Memory }> {
  const { paths, spec } = engine.vmFor({ id, extraKernelParams: [FLOOR_PARAM] });
  await mkdir(paths.sharedDir, { recursive: true });
  const hv = new QemuHypervisor();
  const peak: Memory = { rss: 0, pss: 0 };
  const t0 = performance.now();
  try {
    await hv.prepare(spec);
    await hv.start();
    const exited = hv.wait();
    let done = false;
    void exited.then(() => (done = true));
    while (!done) {
      const now = await memoryOf(paths.vmDir);
      peak.rss = Math.max(peak.rss, now.rss);
      peak.pss = Math.max(peak.pss, now.pss);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 50))]);
    }
    return { ms: performance.now() - t0, peak };
  } finally {
    await hv.cleanup();
    await rm(paths.root, { recursive: true, force: true });
  }
}

interface Memory {
  rss: number;
  pss: number;
}

/** RSS and PSS in MiB of every process whose command line mentions `dir` (QEMU and virtiofsd of one VM). */
async function memoryOf(dir: string): Promise<Memory> {
  const kb = { rss: 0, pss: 0 };
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const cmdline = await readFile(`/proc/${name}/cmdline`, "utf8");
      if (!cmdline.includes(dir)) continue;
      const rollup = await readFile(`/proc/${name}/smaps_rollup`, "utf8");
      kb.rss += Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
      kb.pss += Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0);
    } catch {
      // gone
    }
  }
  return { rss: kb.rss / 1024, pss: kb.pss / 1024 };
}
