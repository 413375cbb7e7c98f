/**
 * The daemon's metrics, put together: one registry holding the CRI
 * families, the phase families (VM boot, network set-up, image pull), the
 * families read from the runtime at scrape time (pods, containers, each VM
 * pod's QEMU), and Node's own process families, all named `vmpod_*`;
 * the observers the layers are given; and the HTTP endpoint serving them
 * with /healthz. Nothing here is global: each DaemonMetrics has its own
 * registry.
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import type { Logger } from "../common/log.js";
import type { CallObserver } from "../cri/instrument.js";
import type { ImageObserver } from "../image/observer.js";
import type { PodNetwork } from "../network/types.js";
import type { VmObserver } from "../sandbox/observer.js";
import { CriMetrics } from "./cri-metrics.js";
import { MetricsServer } from "./http-server.js";
import { TimedPodNetwork } from "./network-timing.js";
import { PhaseMetrics } from "./phase-metrics.js";
import type { ProcessUsage } from "./proc-usage.js";
import { RuntimeCollector, type RuntimeLists } from "./runtime-collector.js";

export interface DaemonMetricsOptions {
  /** "host:port" to serve on; port 0 takes any free port. */
  readonly address: string;
  /** Whether the CRI server is ready (/healthz). */
  readonly ready: () => boolean;
  readonly logger: Logger;
  /** Node's process families (CPU, memory, event loop lag, ...) as `vmpod_process_*` and `vmpod_nodejs_*`; on unless told. */
  readonly processMetrics?: boolean;
  /** How a QEMU's usage is read (tests); from /proc unless told. */
  readonly usage?: (pid: number) => Promise<ProcessUsage | undefined>;
}

export class DaemonMetrics {
  readonly registry = new Registry();
  private readonly criFamilies: CriMetrics;
  private readonly phaseFamilies: PhaseMetrics;
  private readonly runtimeFamilies: RuntimeCollector;
  private readonly server: MetricsServer;

  constructor(options: DaemonMetricsOptions) {
    this.criFamilies = new CriMetrics(this.registry);
    this.phaseFamilies = new PhaseMetrics(this.registry);
    this.runtimeFamilies = new RuntimeCollector(this.registry, options.usage ? { usage: options.usage } : {});
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: "vmpod_" });
    this.server = new MetricsServer({ address: options.address, registry: this.registry, ready: options.ready, logger: options.logger });
  }

  /** For the CRI server's instrument wrapper. */
  get cri(): CallObserver {
    return this.criFamilies;
  }

  /** For the engine: VM boots. */
  get vms(): VmObserver {
    return this.phaseFamilies;
  }

  /** For the image service: pulls and their bytes. */
  get images(): ImageObserver {
    return this.phaseFamilies;
  }

  /** `network`, its set-ups timed. */
  timeNetwork(network: PodNetwork): PodNetwork {
    return new TimedPodNetwork(network, (seconds, outcome) => this.phaseFamilies.networkSetUp(seconds, outcome));
  }

  /** From now on pods, containers and QEMU usage are read from `runtime` at each scrape. */
  watch(runtime: RuntimeLists): void {
    this.runtimeFamilies.watch(runtime);
  }

  /** Serves /metrics and /healthz; resolves with the address bound. */
  start(): Promise<string> {
    return this.server.start();
  }

  /** Idempotent. */
  close(): Promise<void> {
    return this.server.close();
  }
}
