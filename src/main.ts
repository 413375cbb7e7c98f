#!/usr/bin/env node
/**
 * vmpod's command line, and the one place that reads the environment. The
 * daemon's wiring of the layers is in serve.ts; the operator's commands
 * (config paths, env, check) are under cli/.
 *
 *   vmpod serve          the daemon: the CRI server on its socket, the streaming server
 *   vmpod status         asks a running daemon for its version and conditions
 *   vmpod smoke          boot a pod VM, run a container in it, exec into it, tear down
 *   vmpod config paths   where configuration.toml is looked for, and which one is in force
 *   vmpod env            what vmpod would use on this host, as TOML
 *   vmpod check          whether this host can run VM pods, and why not (exit 0: it can)
 *   vmpod factory build|show|destroy KEY...|destroy --all
 *                        the VM templates: build the default shape's, list them, remove them
 *   vmpod version
 *
 * Options: --config PATH (else VMPOD_CONFIG, /etc/vmpod/configuration.toml,
 * the packaged config/configuration.toml), --debug, --socket PATH (status),
 * --no-digests (env: skip the guest files' SHA-256), --all (factory destroy).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { messageOf, VmpodError } from "./common/errors.js";
import { findRepoRoot } from "./common/fs.js";
import { newId } from "./common/ids.js";
import { silentLogger, type Logger } from "./common/log.js";
import { chooseConfigFile, fileInForce, packagedConfigPath, renderConfigPaths, type ConfigChoice } from "./config/discovery.js";
import { hostFileProblems } from "./config/host-files.js";
import { builtInConfig, loadConfigFile, type Loaded } from "./config/load.js";
import { runChecks, renderCheck } from "./cli/check.js";
import { collectEnv } from "./cli/env.js";
import { renderEnv } from "./cli/env-render.js";
import { parseFactoryArgs, runFactory, templateUse } from "./cli/factory.js";
import { hostProbe } from "./cli/host-probe.js";
import { createLiveLogger } from "./cli/live-logger.js";
import { ConfigReloader, logLevelOf } from "./cli/reload.js";
import { createCriClient } from "./cri/client.js";
import { runSmoke } from "./sandbox/smoke.js";
import { defaultTemplateKey } from "./sandbox/template-admin.js";
import { engineFor, serve } from "./serve.js";

const COMMANDS = "serve, status, smoke, config paths, env, check, factory, version";

async function packageVersion(root: string): Promise<string> {
  return (JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { version: string }).version;
}

async function loadChosen(choice: ConfigChoice, assetDir: string): Promise<Loaded> {
  const path = fileInForce(choice);
  return path === undefined ? builtInConfig(assetDir) : loadConfigFile(path, assetDir);
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

/** `vmpod check`: a configuration that does not load is one more problem line. */
async function check(choice: ConfigChoice, assetDir: string): Promise<number> {
  let loaded: Loaded;
  try {
    loaded = await loadChosen(choice, assetDir);
  } catch (err) {
    process.stdout.write(renderCheck([{ verdict: "fail", what: "configuration", detail: messageOf(err) }]).text);
    return 1;
  }
  const { text, exitCode } = renderCheck(await runChecks(loaded, hostProbe()));
  process.stdout.write(text);
  return exitCode;
}

/** Refuses to start when a file the configuration needs is missing: one line per problem. */
async function refuseMissingFiles(loaded: Loaded, logger: Logger): Promise<boolean> {
  const problems = await hostFileProblems(loaded);
  for (const p of problems) logger.error(p);
  return problems.length > 0;
}

/**
 * `vmpod factory ...`. Only build logs (to stderr, as the daemon would):
 * it makes a VM, through the daemon's own engine. SIGINT or SIGTERM stops
 * the build and its VM before exiting.
 */
async function factory(args: readonly string[], all: boolean, loaded: Loaded, debug: boolean): Promise<number> {
  const command = parseFactoryArgs(args, all);
  if ("usage" in command) {
    process.stderr.write(`vmpod: factory: ${command.usage}\n`);
    return 2;
  }
  const { config } = loaded;
  const building = command.sub === "build";
  const logger = building ? createLiveLogger({ level: logLevelOf(config, debug) }).logger : silentLogger;
  for (const w of loaded.warnings) logger.warn(w);
  if (building && templateUse(config).inUse && (await refuseMissingFiles(loaded, logger))) return 1;
  const interrupted = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => interrupted.abort(new VmpodError("Canceled", `interrupted by ${sig}`)));
  return runFactory(command, { config, engine: () => engineFor(config, logger), out: (text) => process.stdout.write(text), signal: interrupted.signal });
}

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      config: { type: "string" },
      debug: { type: "boolean", default: false },
      socket: { type: "string" },
      "no-digests": { type: "boolean", default: false },
      all: { type: "boolean", default: false },
    },
  });
  const command = positionals[0] ?? "serve";
  const root = await findRepoRoot(dirname(fileURLToPath(import.meta.url)));
  if (command === "version") {
    process.stdout.write(`vmpod ${await packageVersion(root)}\n`);
    return 0;
  }
  const assetDir = join(root, "guest/out/current");
  const choice = await chooseConfigFile({ flag: values.config, env: process.env.VMPOD_CONFIG, packaged: packagedConfigPath(root) });
  switch (command) {
    case "config":
      if (positionals[1] !== "paths") {
        process.stderr.write(`vmpod: config ${positionals[1] ?? ""}: the config command has one subcommand, paths\n`);
        return 2;
      }
      process.stdout.write(renderConfigPaths(choice));
      return choice.problem === undefined ? 0 : 1;
    case "check":
      return check(choice, assetDir);
    case "env": {
      const loaded = await loadChosen(choice, assetDir);
      const templateKey = async () => defaultTemplateKey(await engineFor(loaded.config, silentLogger));
      const facts = await collectEnv({ loaded, choice, vmpodVersion: await packageVersion(root), digests: !values["no-digests"], templateKey }, hostProbe());
      process.stdout.write(renderEnv(facts));
      return 0;
    }
    case "factory":
      return factory(positionals.slice(1), values.all, await loadChosen(choice, assetDir), values.debug);
    case "serve":
    case "status":
    case "smoke":
      break;
    default:
      process.stderr.write(`vmpod: unknown command ${command}; commands: ${COMMANDS}\n`);
      return 2;
  }
  const loaded = await loadChosen(choice, assetDir);
  const { config } = loaded;
  const live = createLiveLogger({ level: logLevelOf(config, values.debug) });
  const logger = live.logger;
  for (const w of loaded.warnings) logger.warn(w);
  logger.info("configuration loaded", { source: loaded.source });
  switch (command) {
    case "serve": {
      if (await refuseMissingFiles(loaded, logger)) return 1;
      // The daemon hands over its switch for guest consoles in the log once it has made it.
      let followConsoles: (on: boolean) => void = () => undefined;
      const target = { setLogLevel: (level: Parameters<typeof live.setLevel>[0]) => live.setLevel(level), setDebug: (on: boolean) => followConsoles(on) };
      const reloader = new ConfigReloader({ path: fileInForce(choice), assetDir, config, target, logger, forceDebug: values.debug });
      return serve(config, logger, await packageVersion(root), { onHangup: () => void reloader.reload(), debugSwitch: (set) => (followConsoles = set) });
    }
    case "status":
      return status(values.socket ?? config.cri.socket);
    default: {
      if (await refuseMissingFiles(loaded, logger)) return 1;
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
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`vmpod: ${messageOf(err)}\n`);
    process.exit(1);
  },
);
