/**
 * The daemon: every layer wired together (engine, images, networks, the
 * runtime handlers, the pod manager, the streaming and CRI servers),
 * serving until SIGINT or SIGTERM. Pods outlive it.
 */
import { BASE_KERNEL_PARAMS } from "../guest/build/kernel-params.js";
import { join } from "node:path";
import { messageOf } from "./common/errors.js";
import type { Logger } from "./common/log.js";
import type { Config } from "./config/types.js";
import { createCriServer } from "./cri/server.js";
import { StreamingServer } from "./cri/streaming/server.js";
import { chooseAccel, hostTscKhz } from "./hypervisor/accel.js";
import { QemuHypervisor } from "./hypervisor/qemu.js";
import { openImageService } from "./image/index.js";
import { createPodNetwork } from "./network/index.js";
import type { PodNetwork } from "./network/types.js";
import { ContainerLog } from "./sandbox/container-log.js";
import type { SandboxController } from "./sandbox/controller.js";
import { VmEngine } from "./sandbox/engine.js";
import { PodManager } from "./sandbox/pod-manager.js";
import { RuncController } from "./sandbox/runc/controller.js";
import { specBuilder } from "./sandbox/spec-from-request.js";
import { VmController } from "./sandbox/vm-controller.js";

export async function engineFor(config: Config, logger: Logger): Promise<VmEngine> {
  const accel = await chooseAccel(config.hypervisor.accel);
  logger.info("acceleration chosen", { accel: accel.accel, reason: accel.reason });
  const tscKhz = accel.accel === "tcg" ? await hostTscKhz() : undefined;
  return new VmEngine(
    config,
    { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS },
    () => new QemuHypervisor(),
    logger,
  );
}

/**
 * The daemon: every layer wired, serving until SIGINT or SIGTERM. Pods outlive it.
 * SIGHUP calls `onHangup` (main.ts: the configuration reload of cli/reload.ts).
 */
export async function serve(config: Config, logger: Logger, version: string, onHangup?: () => void): Promise<number> {
  if (onHangup) process.on("SIGHUP", onHangup);
  const engine = await engineFor(config, logger);
  const images = await openImageService(config.image, logger.child({ component: "image" }));
  const network = createPodNetwork(config.network, logger.child({ component: "network" }));
  const controllers = new Map<string, SandboxController>();
  for (const [name, handler] of Object.entries(config.runtime.handlers)) {
    controllers.set(
      name,
      handler.type === "vm"
        ? new VmController(engine, { defaultVcpus: config.hypervisor.defaultVcpus, defaultMemoryMiB: config.hypervisor.defaultMemory }, logger, name, network)
        : new RuncController({ handler: name, runtimePath: handler.runtimePath, stateRoot: join(config.runtime.stateRoot, "hosted", name), logger: logger.child({ handler: name }), network }),
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
    logger,
  });
  await tearDownStrayNetworks(network, new Set(runtime.listPods().map((p) => p.id)), logger);
  const streaming = new StreamingServer({ address: config.cri.streamAddress, runtime, logger, tokenTtlMs: config.cri.streamTokenTtlMs });
  await streaming.start();
  const cri = createCriServer({ socketPath: config.cri.socket, runtime, images: images.service, streaming, version, logger });
  await cri.start();
  logger.info("serving CRI", { socket: config.cri.socket, handlers: runtime.handlers, version });
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => resolve(sig));
  });
  logger.info("shutting down; pods keep running", { signal });
  await cri.close();
  await streaming.close();
  await images.close();
  return 0;
}

/** Pod networks whose pod is gone (the daemon died between removing a pod and its network). */
async function tearDownStrayNetworks(network: PodNetwork, pods: ReadonlySet<string>, logger: Logger): Promise<void> {
  for (const id of await network.list()) {
    if (pods.has(id)) continue;
    logger.warn("tearing down the network of a pod that is gone", { pod: id });
    await network.tearDown(id).catch((err: unknown) => logger.warn("could not tear down a stray pod network", { pod: id, err: messageOf(err) }));
  }
}
