#!/usr/bin/env node
/**
 * vmpod's command line, and the one place that reads the environment. The
 * daemon's wiring of the layers is in serve.ts.
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
import { messageOf, VmpodError } from "./common/errors.js";
import { exists, findRepoRoot } from "./common/fs.js";
import { newId } from "./common/ids.js";
import { createLogger, type Logger } from "./common/log.js";
import { defaultConfig } from "./config/defaults.js";
import { loadConfigFile } from "./config/load.js";
import type { Config } from "./config/types.js";
import { createCriClient } from "./cri/client.js";
import { runSmoke } from "./sandbox/smoke.js";
import { engineFor, serve } from "./serve.js";

const SYSTEM_CONFIG = "/etc/vmpod/configuration.toml";

async function loadConfig(explicit: string | undefined, assetDir: string, logger: Logger): Promise<{ config: Config; source: string }> {
  const chosen = explicit ?? process.env.VMPOD_CONFIG ?? ((await exists(SYSTEM_CONFIG)) ? SYSTEM_CONFIG : undefined);
  if (chosen === undefined || chosen === "") return { config: defaultConfig(assetDir), source: "(built-in defaults)" };
  const loaded = await loadConfigFile(chosen, assetDir);
  for (const w of loaded.warnings) logger.warn(w);
  return { config: loaded.config, source: chosen };
}

async function packageVersion(root: string): Promise<string> {
  return (JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string }).version;
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
