/**
 * The phase families: how long pod VMs take to boot, in total and phase by
 * phase (prepare, VM start, agent connect, sandbox creation in the guest),
 * how long pod networks take to set up (CNI), how long image pulls take
 * and how many bytes they receive. The sandbox and image layers feed them
 * through their observers; the network through a wrapper (network-timing.ts).
 */
import { Counter, Histogram, type Registry } from "prom-client";
import type { ImageObserver } from "../image/observer.js";
import type { ObservedVm, VmObserver } from "../sandbox/observer.js";
import type { BootTimings } from "../sandbox/pod-vm.js";

/** A boot phase takes from a few milliseconds (prepare) to seconds (the guest under TCG). */
const BOOT_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60];
const NETWORK_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const PULL_BUCKETS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];

/** The label each BootTimings field goes under. */
const PHASES: readonly (readonly [keyof BootTimings, string])[] = [
  ["prepareMs", "prepare"],
  ["vmStartMs", "vm_start"],
  ["agentMs", "agent_connect"],
  ["sandboxMs", "sandbox"],
];

export type Outcome = "ok" | "error";

export class PhaseMetrics implements VmObserver, ImageObserver {
  private readonly boot: Histogram;
  private readonly bootPhase: Histogram<"phase">;
  private readonly network: Histogram<"outcome">;
  private readonly pull: Histogram<"outcome">;
  private readonly pulledBytes: Counter;

  constructor(registry: Registry) {
    this.boot = new Histogram({
      name: "vmpod_vm_boot_seconds",
      help: "Seconds to boot a pod VM, from its preparation to the sandbox created by its agent.",
      buckets: BOOT_BUCKETS,
      registers: [registry],
    });
    this.bootPhase = new Histogram({
      name: "vmpod_vm_boot_phase_seconds",
      help: "Seconds each phase of a pod VM's boot took: prepare (run dir, virtiofsd), vm_start (QEMU up), agent_connect (the guest's agent answering), sandbox (the agent's sandbox and network).",
      labelNames: ["phase"] as const,
      buckets: BOOT_BUCKETS,
      registers: [registry],
    });
    this.network = new Histogram({
      name: "vmpod_network_setup_seconds",
      help: "Seconds to set up a pod's network (netns, CNI ADD, the VM's tap), by outcome.",
      labelNames: ["outcome"] as const,
      buckets: NETWORK_BUCKETS,
      registers: [registry],
    });
    this.pull = new Histogram({
      name: "vmpod_image_pull_seconds",
      help: "Seconds an image pull took (callers sharing one pull count once), by outcome.",
      labelNames: ["outcome"] as const,
      buckets: PULL_BUCKETS,
      registers: [registry],
    });
    this.pulledBytes = new Counter({
      name: "vmpod_image_pull_bytes_total",
      help: "Bytes received from registries by image pulls (manifests, configs and layers).",
      registers: [registry],
    });
    for (const [, phase] of PHASES) this.bootPhase.zero({ phase });
    for (const outcome of ["ok", "error"] as const) {
      this.network.zero({ outcome });
      this.pull.zero({ outcome });
    }
  }

  booted(_vm: ObservedVm, timings: BootTimings): void {
    let total = 0;
    for (const [field, phase] of PHASES) {
      this.bootPhase.observe({ phase }, timings[field] / 1000);
      total += timings[field];
    }
    this.boot.observe(total / 1000);
  }

  /** A VM taken over booted long ago: nothing to time. */
  reattached(_vm: ObservedVm): void {}

  networkSetUp(seconds: number, outcome: Outcome): void {
    this.network.observe({ outcome }, seconds);
  }

  pullBytes(bytes: number): void {
    this.pulledBytes.inc(bytes);
  }

  pullEnded(seconds: number, ok: boolean): void {
    this.pull.observe({ outcome: ok ? "ok" : "error" }, seconds);
  }
}
