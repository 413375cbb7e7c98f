/**
 * The daemon: every layer wired together (engine, images, networks, the
 * runtime handlers, the pod manager, the streaming and CRI servers, the
 * metrics endpoint), serving until SIGINT or SIGTERM. Pods outlive it.
 *
 * Once serving, it builds the default VM shape's template in the
 * background (a pod started meanwhile waits for the same build), and stops
 * that build at shutdown.
 *
 * Each layer logs with a `component` field; in debug mode
 * (`runtime.enable_debug`) every pod VM's console is copied into the log.
 */
import { BASE_KERNEL_PARAMS } from "../guest/build/kernel-params.js";
import { join } from "node:path";
import { messageOf, VmpodError } from "./common/errors.js";
import type { Logger } from "./common/log.js";
import type { Config } from "./config/types.js";
import { createCriServer } from "./cri/server.js";
import { StreamingServer } from "./cri/streaming/server.js";
import { chooseAccel, hostTscKhz } from "./hypervisor/accel.js";
import { QemuHypervisor } from "./hypervisor/qemu.js";
import { openImageService } from "./image/index.js";
import { ConsoleFollower } from "./metrics/console-follower.js";
import { DaemonMetrics } from "./metrics/daemon-metrics.js";
import { vmObservers } from "./metrics/vm-observers.js";
import { createPodNetwork } from "./network/index.js";
import type { PodNetwork } from "./network/types.js";
import { ContainerLog } from "./sandbox/container-log.js";
import type { SandboxController } from "./sandbox/controller.js";
import { VmEngine } from "./sandbox/engine.js";
import type { VmObserver } from "./sandbox/observer.js";
import { PodManager } from "./sandbox/pod-manager.js";
import { RuncController } from "./sandbox/runc/controller.js";
import { specBuilder } from "./sandbox/spec-from-request.js";
import { defaultTemplateKey } from "./sandbox/template-admin.js";
import { VmController } from "./sandbox/vm-controller.js";

export async function engineFor(config: Config, logger: Logger, observer?: VmObserver): Promise<VmEngine> {
  const accel = await chooseAccel(config.hypervisor.accel);
  logger.info("acceleration chosen", { accel: accel.accel, reason: accel.reason });
  const tscKhz = accel.accel === "tcg" ? await hostTscKhz() : undefined;
  return new VmEngine(
    config,
    { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS },
    () => new QemuHypervisor(),
    logger,
    observer,
  );
}

/**
 * The daemon: every layer wired, serving until SIGINT or SIGTERM. Pods outlive it.
 * SIGHUP calls `live.onHangup` (main.ts: the configuration reload of
 * cli/reload.ts); `live.debugSwitch` is handed the switch that turns the
 * copying of guest consoles into the log on and off, for such a reload.
 */
export async function serve(
  config: Config,
  logger: Logger,
  version: string,
  live: { readonly onHangup?: () => void; readonly debugSwitch?: (set: (on: boolean) => void) => void } = {},
): Promise<number> {
  if (live.onHangup) process.on("SIGHUP", live.onHangup);
  // /healthz answers 503 until the CRI server listens, and again once it is closing.
  let criReady = false;
  const ready = () => criReady;
  const metrics = await startMetrics(config, ready, logger.child({ component: "metrics" }));
  // Pod VM consoles in the log in debug mode (main.ts sets the log's level from it).
  const consoles = new ConsoleFollower(logger.child({ component: "guest" }), { enabled: config.runtime.enableDebug });
  live.debugSwitch?.((on) => consoles.setEnabled(on));
  const sandboxLogger = logger.child({ component: "sandbox" });
  const engine = await engineFor(config, sandboxLogger, vmObservers(metrics?.vms, consoles));
  const images = await openImageService(config.image, logger.child({ component: "image" }), metrics?.images);
  const podNetwork = createPodNetwork(config.network, logger.child({ component: "network" }));
  const network = metrics ? metrics.timeNetwork(podNetwork) : podNetwork;
  const controllers = new Map<string, SandboxController>();
  for (const [name, handler] of Object.entries(config.runtime.handlers)) {
    controllers.set(
      name,
      handler.type === "vm"
        ? new VmController(engine, { defaultVcpus: config.hypervisor.defaultVcpus, defaultMemoryMiB: config.hypervisor.defaultMemory }, sandboxLogger.child({ handler: name }), name, network)
        : new RuncController({ handler: name, runtimePath: handler.runtimePath, stateRoot: join(config.runtime.stateRoot, "hosted", name), logger: sandboxLogger.child({ handler: name }), network }),
    );
  }
  const vmHandler = Object.entries(config.runtime.handlers).find(([name, h]) => h.type === "vm" && name === config.runtime.defaultHandler)?.[0] ??
    Object.entries(config.runtime.handlers).find(([, h]) => h.type === "vm")?.[0] ??
    config.runtime.defaultHandler;
  const kindOf = (handler: string): "vm" | "host" => (config.runtime.handlers[handler]?.type === "oci" ? "host" : "vm");
  const runtime = await PodManager.open({
    stateRoot: config.runtime.stateRoot,
    controllers,
    defaultHandler: config.runtime.defaultHandler,
    vmHandler,
    images: images.service,
    buildSpec: specBuilder(kindOf),
    openLog: (path) => ContainerLog.open(path),
    networkStatus: () => network.status(),
    logger: sandboxLogger,
  });
  metrics?.watch(runtime);
  await tearDownStrayNetworks(network, new Set(runtime.listPods().map((p) => p.id)), logger);
  const criLogger = logger.child({ component: "cri" });
  const streaming = new StreamingServer({ address: config.cri.streamAddress, runtime, logger: criLogger, tokenTtlMs: config.cri.streamTokenTtlMs });
  await streaming.start();
  const cri = createCriServer({ socketPath: config.cri.socket, runtime, images: images.service, streaming, version, logger: criLogger, ready, ...(metrics ? { observer: metrics.cri } : {}) });
  await cri.start();
  criReady = true;
  logger.info("serving CRI", { socket: config.cri.socket, handlers: runtime.handlers, version });
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => resolve(sig));
  });
  // Started once the signals are ours, so that a stop can always end the build's VM.
  const warmUp = warmUpInBackground(engine, sandboxLogger.child({ component: "templates" }));
  const signal = await stopRequested;
  logger.info("shutting down; pods keep running", { signal });
  criReady = false;
  const warmUpStopped = warmUp.stop();
  await cri.close();
  await streaming.close();
  await consoles.close();
  await images.close();
  await metrics?.close();
  await warmUpStopped;
  return 0;
}

/**
 * Builds the template of the configured default VM shape while the daemon
 * serves, so that pods find it built (a pod asking meanwhile joins the
 * build), after removing what builds of dead daemons left. `stop` aborts
 * it at shutdown and closes the store, which stops every build in flight
 * (pods start builds of their own shapes too) with its VM: a template VM
 * never outlives the daemon, unlike pods.
 */
function warmUpInBackground(engine: VmEngine, logger: Logger): { stop(): Promise<void> } {
  const templates = engine.templates;
  if (!templates) return { stop: () => Promise.resolve() };
  const abort = new AbortController();
  const started = performance.now();
  const ms = () => Math.round(performance.now() - started);
  const done = (async () => {
    await templates.cleanupLeftovers();
    const { key } = await defaultTemplateKey(engine);
    logger.info("default vm template: building or checking it", { template: key });
    abort.signal.throwIfAborted();
    if (await engine.warmUp(abort.signal)) logger.info("default vm template ready", { template: key, ms: ms() });
    else logger.warn("no default vm template: pods boot cold until one is built (the reason is logged above)", { template: key, ms: ms() });
  })().catch((err: unknown) => {
    if (abort.signal.aborted) logger.info("default vm template: build stopped by the shutdown", { ms: ms() });
    else logger.warn("default vm template: build failed; pods boot cold", { err: messageOf(err), ms: ms() });
  });
  return {
    async stop() {
      abort.abort(new VmpodError("Canceled", "the daemon is shutting down"));
      await done;
      await templates.close();
    },
  };
}

/**
 * The metrics endpoint when `metrics.enable`, listening before anything
 * else so that /healthz says 503 while the daemon starts. A daemon that
 * cannot listen there still serves CRI: it says so in its log.
 */
async function startMetrics(config: Config, ready: () => boolean, logger: Logger): Promise<DaemonMetrics | undefined> {
  if (!config.metrics.enable) return undefined;
  const metrics = new DaemonMetrics({ address: config.metrics.address, ready, logger });
  try {
    const address = await metrics.start();
    logger.info("metrics listening", { address, url: `http://${address}/metrics` });
  } catch (err) {
    logger.error("metrics: cannot listen; serving without /metrics and /healthz", { address: config.metrics.address, err: messageOf(err) });
  }
  return metrics;
}

/** Pod networks whose pod is gone (the daemon died between removing a pod and its network). */
async function tearDownStrayNetworks(network: PodNetwork, pods: ReadonlySet<string>, logger: Logger): Promise<void> {
  for (const id of await network.list()) {
    if (pods.has(id)) continue;
    logger.warn("tearing down the network of a pod that is gone", { pod: id });
    await network.tearDown(id).catch((err: unknown) => logger.warn("could not tear down a stray pod network", { pod: id, err: messageOf(err) }));
  }
}
