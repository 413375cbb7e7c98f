/**
 * pod-start: a pod started through CRI, RunPodSandbox → CreateContainer →
 * StartContainer (a busybox container from a pulled image), next to the
 * engine's bare cold start of the same (a VM booted, a container from a
 * busybox directory created and started) in the same run. The ratio is the
 * CRI server's overhead; the goal is ≤ 1.10.
 *
 *   pod_start_ms           through CRI, median      floor: the engine alone, median
 *   template_pod_start_ms  the engine restoring VMs from a template ([factory]
 *                          enable_template, q35), median; floor: the engine's
 *                          cold start above (the default machine). Goal ≤ 0.15.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS, ensureGuestImage } from "../guest/build/index.js";
import { silentLogger } from "../src/common/log.js";
import { defaultConfig } from "../src/config/defaults.js";
import type { Config } from "../src/config/types.js";
import { chooseAccel, hostTscKhz } from "../src/hypervisor/accel.js";
import { QemuHypervisor } from "../src/hypervisor/qemu.js";
import { VmEngine } from "../src/sandbox/engine.js";
import { makeBusyboxRootfs } from "../src/sandbox/smoke.js";
import { containerConfig, podConfig, withDaemon } from "./cri-daemon.js";
import { emit, median } from "./report.js";

const RUNS = Number(process.env.VMPOD_BENCH_RUNS ?? 3);

export async function run(): Promise<void> {
  const image = await ensureGuestImage({ log: (m) => process.stderr.write(`guest image: ${m}\n`) });
  const scratch = await mkdtemp(join(tmpdir(), "vmpod-bench-podstart-"));
  try {
    const base = defaultConfig(image.dir);
    const config: Config = { ...base, runtime: { ...base.runtime, stateRoot: join(scratch, "state") } };
    const accel = await chooseAccel(config.hypervisor.accel);
    const tscKhz = accel.accel === "tcg" ? await hostTscKhz() : undefined;
    const engine = new VmEngine(config, { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS }, () => new QemuHypervisor(), silentLogger);
    const rootfs = await makeBusyboxRootfs(join(scratch, "rootfs"));
    const floor: number[] = [];
    const ours: number[] = [];
    await withDaemon(async ({ daemon, image: ref }) => {
      const rt = daemon.client.runtime;
      for (let i = 0; i < RUNS; i++) {
        let t = performance.now();
        const vm = await engine.boot({ id: `floor${i}`, hostname: "bench" });
        await vm.createContainer("c", { kind: "dir", path: rootfs }, {
          ociVersion: "1.1.0",
          process: { args: ["sleep", "100000"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
          linux: { namespaces: [{ type: "pid" }, { type: "mount" }], cgroupsPath: "" },
        });
        await vm.startContainer("c");
        floor.push(performance.now() - t);
        await vm.stop();

        const pod = podConfig(`bench-${i}`, daemon.logDir);
        t = performance.now();
        const { podSandboxId } = await rt.runPodSandbox({ config: pod });
        const { containerId } = await rt.createContainer({ podSandboxId, config: containerConfig("c", ref, ["sleep", "100000"]), sandboxConfig: pod });
        await rt.startContainer({ containerId });
        ours.push(performance.now() - t);
        await rt.stopPodSandbox({ podSandboxId });
        await rt.removePodSandbox({ podSandboxId });
      }
    });
    const templated: number[] = [];
    const tplConfig: Config = {
      ...config,
      hypervisor: { ...config.hypervisor, machineType: "q35" },
      factory: { ...config.factory, enableTemplate: true, templatePath: join(scratch, "templates") },
    };
    const tplEngine = new VmEngine(tplConfig, { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS }, () => new QemuHypervisor(), silentLogger);
    // The first start builds the template; it is not timed.
    for (let i = -1; i < RUNS; i++) {
      const t = performance.now();
      const vm = await tplEngine.boot({ id: `tpl${i + 1}`, hostname: "bench" });
      await vm.createContainer("c", { kind: "dir", path: rootfs }, {
        ociVersion: "1.1.0",
        process: { args: ["sleep", "100000"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
        linux: { namespaces: [{ type: "pid" }, { type: "mount" }], cgroupsPath: "" },
      });
      await vm.startContainer("c");
      if (i >= 0) templated.push(performance.now() - t);
      await vm.stop();
    }
    emit({
      bench: "pod-start",
      metric: "template_pod_start_ms",
      value: median(templated),
      unit: "ms",
      floor: median(floor),
      note: `median of ${RUNS} under ${accel.accel}, restored from a q35 template (built before, untimed); floor: the engine's cold start on ${config.hypervisor.machineType}; templated: [${templated.map(Math.round).join(", ")}]`,
    });
    emit({
      bench: "pod-start",
      metric: "pod_start_ms",
      value: median(ours),
      unit: "ms",
      floor: median(floor),
      note: `median of ${RUNS} under ${accel.accel}; floor: the engine alone (boot, create, start); ours: [${ours.map(Math.round).join(", ")}], floor: [${floor.map(Math.round).join(", ")}]`,
    });
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}
