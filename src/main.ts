#!/usr/bin/env node
/**
 * vmpod's command line, and the one place that wires the layers together
 * and reads the environment.
 *
 *   vmpod serve     the daemon: the CRI server on its socket, the streaming server
 *   vmpod status    asks a running daemon for its version and conditions
 *   vmpod smoke     boot a pod VM, run a container in it, exec into it, tear down
 *   vmpod version
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { BASE_KERNEL_PARAMS } from "../guest/build/kernel-params.js";
import { messageOf, VmpodError } from "./common/errors.js";
import { exists, findRepoRoot } from "./common/fs.js";
import { newId } from "./common/ids.js";
import { createLogger, type Logger } from "./common/log.js";
import { defaultConfig } from "./config/defaults.js";
import { loadConfigFile } from "./config/load.js";
import type { Config } from "./config/types.js";
import { chooseAccel, hostTscKhz } from "./hypervisor/accel.js";
import { QemuHypervisor } from "./hypervisor/qemu.js";
import { createCriClient } from "./cri/client.js";
import { createCriServer } from "./cri/server.js";
import { StreamingServer } from "./cri/streaming/server.js";
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
import { runSmoke } from "./sandbox/smoke.js";

const SYSTEM_CONFIG = "/etc/vmpod/configuration.toml";

async function loadConfig(explicit: string | undefined, assetDir: string, logger: Logger): Promise<{ config: Config; source: string }> {
  const chosen = explicit ?? process.env.VMPOD_CONFIG ?? ((await exists(SYSTEM_CONFIG)) ? SYSTEM_CONFIG : undefined);
  if (chosen === undefined || chosen === "") return { config: defaultConfig(assetDir), source: "(built-in defaults)" };
  const loaded = await loadConfigFile(chosen, assetDir);
  for (const w of loaded.warnings) logger.warn(w);
  return { config: loaded.config, source: chosen };
}

async function engineFor(config: Config, logger: Logger): Promise<VmEngine> {
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

async function packageVersion(root: string): Promise<string> {
  return (JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string }).version;
}

/** The daemon: every layer wired, serving until SIGINT or SIGTERM. Pods outlive it. */
async function serve(config: Config, logger: Logger, version: string): Promise<number> {
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

/** Asks the daemon on `socket` for its version and conditions. */
async function status(socket: string): Promise<number> {
  const client = createCriClient(socket);
  try {
    await client.waitForReady(5_000);
    const version = await client.runtime.version({});
    const st = await client.runtime.status({});
    process.stdout.write(`${version.runtimeName} ${version.runtimeVersion} (CRI ${version.runtimeApiVersion}) on ${socket}\n`);
    for (const c of st.status?.conditions ?? []) process.stdout.write(`  ${c.type}: ${c.status}${c.reason ? ` (${c.reason}: ${c.message})` : ""}\n`);
    return (st.status?.conditions ?? []).every((c) => c.status || c.type !== "RuntimeReady") ? 0 : 1;
  } finally {
    client.close();
  }
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { config: { type: "string" }, debug: { type: "boolean", default: false }, socket: { type: "string" } },
  });
  const command = positionals[0] ?? "serve";
  const root = await findRepoRoot(dirname(fileURLToPath(import.meta.url)));
  if (command === "version") {
    process.stdout.write(`vmpod ${await packageVersion(root)}\n`);
    return 0;
  }
  const bootLogger = createLogger({ level: values.debug ? "debug" : "info" });
  const { config, source } = await loadConfig(values.config, join(root, "guest/out/current"), bootLogger);
  const logger = createLogger({ level: values.debug ? "debug" : config.runtime.logLevel });
  logger.info("configuration loaded", { source });
  switch (command) {
    case "serve":
      return serve(config, logger, await packageVersion(root));
    case "status":
      return status(values.socket ?? config.cri.socket);
    case "smoke": {
      const engine = await engineFor(config, logger);
      const scratch = await mkdtemp(join(tmpdir(), "vmpod-smoke-"));
      const interrupted = new AbortController();
      for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => interrupted.abort(new VmpodError("Canceled", `interrupted by ${sig}`)));
      try {
        const report = await runSmoke(engine, { id: `smoke-${newId().slice(0, 8)}`, scratchDir: scratch, signal: interrupted.signal });
        process.stdout.write(JSON.stringify(report, null, 2) + "\n");
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
      return 0;
    }
    default:
      process.stderr.write(`vmpod: unknown command ${command}; commands: serve, status, smoke, version\n`);
      return 2;
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`vmpod: ${messageOf(err)}\n`);
    process.exit(1);
  },
);
