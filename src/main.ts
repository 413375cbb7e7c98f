#!/usr/bin/env node
/**
 * vmpod's command line, and the one place that wires the layers together
 * and reads the environment.
 *
 *   vmpod serve     the daemon (until the CRI server lands: the engine's smoke path)
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
import { VmEngine } from "./sandbox/engine.js";
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

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { config: { type: "string" }, debug: { type: "boolean", default: false } },
  });
  const command = positionals[0] ?? "serve";
  const root = await findRepoRoot(dirname(fileURLToPath(import.meta.url)));
  if (command === "version") {
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string };
    process.stdout.write(`vmpod ${pkg.version}\n`);
    return 0;
  }
  const bootLogger = createLogger({ level: values.debug ? "debug" : "info" });
  const { config, source } = await loadConfig(values.config, join(root, "guest/out/current"), bootLogger);
  const logger = createLogger({ level: values.debug ? "debug" : config.runtime.logLevel });
  logger.info("configuration loaded", { source });
  switch (command) {
    case "serve":
    case "smoke": {
      if (command === "serve") logger.warn("the CRI server is not built yet: running the engine's smoke path instead");
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
      process.stderr.write(`vmpod: unknown command ${command}; commands: serve, smoke, version\n`);
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
