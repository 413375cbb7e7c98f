/**
 * cri-latency: how long the calls kubelet makes every second take with 50
 * running containers (five pod VMs of ten containers each): ListContainers,
 * ListPodSandbox and ContainerStatus, p50 and p99 over many calls. The goal
 * is p99 ≤ 10 ms; the floor printed is that goal.
 */
import { containerConfig, podConfig, withDaemon } from "./cri-daemon.js";
import { emit } from "./report.js";

const PODS = 5;
const PER_POD = 10;
const CALLS = Number(process.env.VMPOD_BENCH_CALLS ?? 300);
const GOAL_P99_MS = 10;

function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

export async function run(): Promise<void> {
  await withDaemon(async ({ daemon, image }) => {
    const rt = daemon.client.runtime;
    const containers: string[] = [];
    for (let p = 0; p < PODS; p++) {
      const pod = podConfig(`lat-${p}`, daemon.logDir);
      const { podSandboxId } = await rt.runPodSandbox({ config: pod });
      for (let c = 0; c < PER_POD; c++) {
        const { containerId } = await rt.createContainer({ podSandboxId, config: containerConfig(`c${c}`, image, ["sleep", "100000"]), sandboxConfig: pod });
        await rt.startContainer({ containerId });
        containers.push(containerId);
      }
    }
    const calls: Record<string, () => Promise<unknown>> = {
      ListContainers: () => rt.listContainers({}),
      ListPodSandbox: () => rt.listPodSandbox({}),
      ContainerStatus: () => rt.containerStatus({ containerId: containers[Math.floor(Math.random() * containers.length)] as string }),
    };
    for (const [name, call] of Object.entries(calls)) {
      for (let i = 0; i < 20; i++) await call(); // warm up
      const ms: number[] = [];
      for (let i = 0; i < CALLS; i++) {
        const t = performance.now();
        await call();
        ms.push(performance.now() - t);
      }
      const note = `${containers.length} running containers in ${PODS} pod VMs; ${CALLS} calls; floor: the goal for p99`;
      emit({ bench: "cri-latency", metric: `${name}.p50_ms`, value: percentile(ms, 50), unit: "ms", floor: GOAL_P99_MS, note });
      emit({ bench: "cri-latency", metric: `${name}.p99_ms`, value: percentile(ms, 99), unit: "ms", floor: GOAL_P99_MS, note });
    }
  });
}
