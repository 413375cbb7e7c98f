/**
 * The families read from the runtime when Prometheus scrapes: pods by
 * state and handler, containers by state (from the runtime's list calls),
 * and what each ready pod's VM costs the host, its QEMU's resident memory
 * and CPU time (from /proc, by the QEMU pid the pod's info names, which a
 * pod taken over after a restart has as well).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { Runtime } from "../sandbox/runtime.js";
import type { ContainerState, PodState, PodStatus } from "../sandbox/types.js";
import { readProcessUsage, type ProcessUsage } from "./proc-usage.js";

const POD_STATES: readonly PodState[] = ["ready", "notready"];
const CONTAINER_STATES: readonly ContainerState[] = ["created", "running", "exited", "unknown"];

export interface RuntimeCollectorOptions {
  /** Where /proc is (tests give a directory of their own). */
  readonly procRoot?: string;
  /** How a process's usage is read; readProcessUsage under procRoot unless told. */
  readonly usage?: (pid: number) => Promise<ProcessUsage | undefined>;
}

type PodLabels = "pod_id" | "namespace" | "pod";

/** What the families read of the runtime. */
export type RuntimeLists = Pick<Runtime, "handlers" | "listPods" | "listContainers">;

/** The QEMU pid a pod's info names, for VM pods. */
export function qemuPidOf(pod: PodStatus): number | undefined {
  const pid = pod.info.qemuPid;
  return typeof pid === "number" && Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

export class RuntimeCollector {
  private runtime: RuntimeLists | undefined;
  private readonly usage: (pid: number) => Promise<ProcessUsage | undefined>;

  constructor(registry: Registry, options: RuntimeCollectorOptions = {}) {
    const procRoot = options.procRoot ?? "/proc";
    this.usage = options.usage ?? ((pid) => readProcessUsage(pid, procRoot));
    const source = () => this.runtime;
    new Gauge({
      name: "vmpod_pods",
      help: "Pods the runtime holds, by state (ready, notready) and runtime handler.",
      labelNames: ["state", "handler"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const runtime = source();
        if (!runtime) return;
        for (const handler of runtime.handlers) for (const state of POD_STATES) this.set({ state, handler }, 0);
        for (const pod of runtime.listPods()) this.inc({ state: pod.state, handler: pod.handler });
      },
    });
    new Gauge({
      name: "vmpod_containers",
      help: "Containers the runtime holds, by state (created, running, exited, unknown).",
      labelNames: ["state"] as const,
      registers: [registry],
      collect() {
        this.reset();
        const runtime = source();
        if (!runtime) return;
        for (const state of CONTAINER_STATES) this.set({ state }, 0);
        for (const c of runtime.listContainers()) this.inc({ state: c.state });
      },
    });
    // Each of the two reads /proc for itself when scraped: two small files a pod.
    const usageOfPods = () => this.podUsage();
    new Gauge({
      name: "vmpod_pod_qemu_resident_memory_bytes",
      help: "Resident memory of each ready VM pod's QEMU process, in bytes.",
      labelNames: ["pod_id", "namespace", "pod"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const { labels, usage } of await usageOfPods()) this.set(labels, usage.rssBytes);
      },
    });
    new Counter({
      name: "vmpod_pod_qemu_cpu_seconds_total",
      help: "CPU time (user and system) each ready VM pod's QEMU process has used, in seconds.",
      labelNames: ["pod_id", "namespace", "pod"] as const,
      registers: [registry],
      async collect() {
        this.reset();
        for (const { labels, usage } of await usageOfPods()) this.inc(labels, usage.cpuSeconds);
      },
    });
  }

  /** From now on the families describe `runtime`'s pods and containers. */
  watch(runtime: RuntimeLists): void {
    this.runtime = runtime;
  }

  private async podUsage(): Promise<{ labels: Record<PodLabels, string>; usage: ProcessUsage }[]> {
    const runtime = this.runtime;
    if (!runtime) return [];
    // A pod that is not ready may have lost its VM, and its pid may be another process's by now.
    const pods = runtime.listPods({ state: "ready" }).flatMap((pod) => {
      const pid = qemuPidOf(pod);
      return pid === undefined ? [] : [{ pod, pid }];
    });
    const read = await Promise.all(pods.map(async ({ pod, pid }) => ({ pod, usage: await this.usage(pid) })));
    return read.flatMap(({ pod, usage }) =>
      usage === undefined ? [] : [{ labels: { pod_id: pod.id, namespace: pod.config.metadata.namespace, pod: pod.config.metadata.name }, usage }],
    );
  }
}
