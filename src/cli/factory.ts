/**
 * `vmpod factory build|show|destroy`: the operator's hand on VM templates.
 *
 *   build             builds (or finds) the template of the configured
 *                     default VM shape, through the same engine and store
 *                     the daemon uses, and says where it is; a build of it
 *                     by a running daemon is waited for, not repeated
 *   show              the templates on disk, which one the default shape
 *                     uses, and whether templates are in use (and why not)
 *   destroy KEY...    removes templates (and builds left unfinished by a
 *   destroy --all     process that is gone); safe while the daemon runs
 *
 * Also the `[factory]` facts of `vmpod env`.
 */
import { messageOf } from "../common/errors.js";
import type { Config } from "../config/types.js";
import { templatesUnusable, type VmEngine } from "../sandbox/engine.js";
import { defaultTemplateKey, destroyTemplates, listTemplates, templateStatus, waitForOthersBuilding, type IsAlive, type TemplateEntry, type TemplateListing } from "../sandbox/template-admin.js";
import type { TemplateKey } from "../sandbox/template-key.js";

/** What `vmpod env` says under [factory]. */
export interface FactoryFacts {
  readonly enableTemplate: boolean;
  /** Pods are restored from templates: enabled, and the configuration allows it. */
  readonly inUse: boolean;
  /** Why templates are not in use. */
  readonly reason?: string;
  readonly templatePath: string;
  readonly vmCacheNumber: number;
  /** The key of the configured default shape's template, when it can be computed. */
  readonly currentKey?: string;
  /** Why it cannot. */
  readonly currentKeyError?: string;
  /** Templates in the template path. */
  readonly templates: number;
  /** Whether the default shape's template is built. */
  readonly currentBuilt?: boolean;
}

/** Whether templates are in use with `config`, and the reason when not. */
export function templateUse(config: Config): { inUse: boolean; reason?: string } {
  if (!config.factory.enableTemplate) return { inUse: false, reason: "enable_template = false" };
  const why = templatesUnusable(config);
  return why === undefined ? { inUse: true } : { inUse: false, reason: why };
}

/**
 * The current key and what the template path holds. `keyOf` computes the
 * default shape's key (it needs the host's acceleration); it is asked only
 * when the configuration could use templates, and none is shown without it.
 */
export async function factoryFacts(config: Config, keyOf: (() => Promise<TemplateKey>) | undefined): Promise<FactoryFacts> {
  const { factory } = config;
  const use = templateUse(config);
  const current = await currentKey(config, keyOf);
  let listing: TemplateListing | undefined;
  let listError: string | undefined;
  try {
    listing = await listTemplates(factory.templatePath);
  } catch (err) {
    listError = messageOf(err);
  }
  const key = current.key?.key;
  return {
    enableTemplate: factory.enableTemplate,
    inUse: use.inUse,
    ...(use.reason === undefined ? {} : { reason: use.reason }),
    templatePath: factory.templatePath,
    vmCacheNumber: factory.vmCacheNumber,
    ...(key === undefined ? {} : { currentKey: key }),
    ...(current.error === undefined ? (listError === undefined ? {} : { currentKeyError: listError }) : { currentKeyError: current.error }),
    templates: listing?.templates.length ?? 0,
    ...(key === undefined || listing === undefined ? {} : { currentBuilt: listing.templates.some((t) => t.key === key && t.problem === undefined) }),
  };
}

/** The default shape's key, or why there is none (a configuration that cannot use templates has none). */
async function currentKey(config: Config, keyOf: (() => Promise<TemplateKey>) | undefined): Promise<{ key?: TemplateKey; error?: string }> {
  if (keyOf === undefined || templatesUnusable(config) !== undefined) return {};
  try {
    return { key: await keyOf() };
  } catch (err) {
    return { error: messageOf(err) };
  }
}

/** Where a command writes, and the engine it builds with (made only when needed). */
export interface FactoryDeps {
  readonly config: Config;
  readonly engine: () => Promise<VmEngine>;
  readonly out: (text: string) => void;
  readonly isAlive?: IsAlive;
  readonly signal?: AbortSignal;
}

export type FactoryCommand = { readonly sub: "build" } | { readonly sub: "show" } | { readonly sub: "destroy"; readonly keys: readonly string[] | "all" };

export const FACTORY_USAGE = "vmpod factory build | show | destroy KEY... | destroy --all";

/** The command `args` (after `factory`) name, or what is wrong with them. */
export function parseFactoryArgs(args: readonly string[], all: boolean): FactoryCommand | { readonly usage: string } {
  const [sub, ...rest] = args;
  if ((sub === "build" || sub === "show") && rest.length === 0 && !all) return { sub };
  if (sub === "destroy") {
    if (all && rest.length === 0) return { sub, keys: "all" };
    if (!all && rest.length > 0) return { sub, keys: rest };
    return { usage: "destroy takes template keys, or --all, not both and not neither" };
  }
  return { usage: `${sub === undefined ? "a subcommand is needed" : `unknown or misused subcommand ${sub}`}: ${FACTORY_USAGE}` };
}

/** Runs `command`; the exit code (0 done, 1 failed, with the reason written). */
export async function runFactory(command: FactoryCommand, deps: FactoryDeps): Promise<number> {
  switch (command.sub) {
    case "build":
      return build(deps);
    case "show":
      return show(deps);
    case "destroy":
      return destroy(command.keys, deps);
  }
}

async function build(deps: FactoryDeps): Promise<number> {
  const { config, out } = deps;
  const use = templateUse(config);
  if (!use.inUse) {
    out(`vm templates are not in use, nothing to build: ${use.reason ?? ""}\n`);
    return 1;
  }
  const engine = await deps.engine();
  const key = await defaultTemplateKey(engine);
  let found: boolean;
  let built: boolean;
  try {
    const others = await waitForOthersBuilding(config.factory.templatePath, key.key, {
      ...(deps.isAlive ? { isAlive: deps.isAlive } : {}),
      ...(deps.signal ? { signal: deps.signal } : {}),
    });
    if (others.length > 0) out(`waited for the build of process ${others.join(", ")} (a running daemon's)\n`);
    found = (await listTemplates(config.factory.templatePath, deps.isAlive)).templates.some((t) => t.key === key.key && t.problem === undefined);
    built = await engine.warmUp(deps.signal);
  } catch (err) {
    if (!deps.signal?.aborted) throw err;
    // The store has stopped the build it was asked for; closing it stops any other before this process exits.
    await engine.templates?.close();
    out(`interrupted: ${messageOf(err)}; nothing of this build is left running\n`);
    return 1;
  }
  if (!built) {
    out(`the vm template ${key.key} could not be built (the log above says why); pods boot cold\n`);
    return 1;
  }
  const entry = (await listTemplates(config.factory.templatePath, deps.isAlive)).templates.find((t) => t.key === key.key);
  if (entry === undefined) {
    out(`the vm template ${key.key} was built but is gone from ${config.factory.templatePath} (removed meanwhile)\n`);
    return 1;
  }
  out(
    [
      `vm template ${key.key} ${found ? "was already built" : "built"} for ${shape(config)}`,
      `  directory:  ${entry.dir}`,
      `  size:       ${entry.sizeBytes === undefined ? "?" : `${size(entry.sizeBytes)} (${entry.sizeBytes} bytes)`}, ${size(entry.diskBytes)} on disk`,
      `  built at:   ${entry.builtAt ?? "?"}`,
      `  build time: ${entry.buildMs === undefined ? "?" : seconds(entry.buildMs)}`,
      "",
    ].join("\n"),
  );
  return 0;
}

async function show(deps: FactoryDeps): Promise<number> {
  const { config, out } = deps;
  const use = templateUse(config);
  const current = await currentKey(config, async () => defaultTemplateKey(await deps.engine()));
  const listing = await listTemplates(config.factory.templatePath, deps.isAlive);
  out(renderShow(config, use, current.key, current.error, listing));
  return 0;
}

/** `vmpod factory show`'s text. */
export function renderShow(config: Config, use: { inUse: boolean; reason?: string }, current: TemplateKey | undefined, keyError: string | undefined, listing: TemplateListing): string {
  const lines: string[] = [];
  lines.push(use.inUse ? "vm templates: in use" : `vm templates: not in use: ${use.reason ?? ""}`);
  lines.push(`template path: ${listing.dir}${listing.exists ? "" : " (does not exist yet)"}`);
  const built = current !== undefined && listing.templates.some((t) => t.key === current.key && t.problem === undefined);
  if (current !== undefined) lines.push(`default shape (${shape(config)}): template ${current.key}, ${built ? "built" : "not built"}`);
  else if (keyError !== undefined) lines.push(`default shape (${shape(config)}): its template key cannot be computed: ${keyError}`);
  if (listing.templates.length === 0) lines.push("no templates");
  else {
    const rows = listing.templates.map((t) => row(t, templateStatus(t, current)));
    const widths = HEADER.map((_, i) => Math.max(...[HEADER, ...rows].map((r) => (r[i] ?? "").length)));
    for (const r of [HEADER, ...rows]) lines.push(r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  "));
  }
  for (const u of listing.unfinished) {
    lines.push(u.alive ? `building: ${u.name} (process ${u.pid})` : `unfinished: ${u.name} (process ${u.pid} is gone; destroy removes it)`);
  }
  return `${lines.join("\n")}\n`;
}

const HEADER = ["KEY", "SIZE", "ON DISK", "BUILT AT", "BUILD", "STATUS"];

function row(t: TemplateEntry, status: string): string[] {
  return [
    t.key,
    t.sizeBytes === undefined ? "-" : size(t.sizeBytes),
    size(t.diskBytes),
    t.builtAt ?? "-",
    t.buildMs === undefined ? "-" : seconds(t.buildMs),
    t.problem === undefined ? status : `${status}: ${t.problem}`,
  ];
}

async function destroy(keys: readonly string[] | "all", deps: FactoryDeps): Promise<number> {
  const { config, out } = deps;
  let result;
  try {
    result = await destroyTemplates(config.factory.templatePath, keys, deps.isAlive);
  } catch (err) {
    out(`${messageOf(err)}\n`);
    return 1;
  }
  const lines = [
    ...result.removed.map((k) => `removed template ${k}`),
    ...result.abandoned.map((n) => `removed unfinished build ${n}`),
    ...result.building.map((n) => `left ${n}: its build is running`),
  ];
  if (lines.length === 0) lines.push(`no templates in ${config.factory.templatePath}`);
  out(`${lines.join("\n")}\n`);
  return 0;
}

function shape(config: Config): string {
  const vcpus = config.hypervisor.defaultVcpus;
  return `${vcpus} vCPU${vcpus === 1 ? "" : "s"}, ${config.hypervisor.defaultMemory} MiB`;
}

function size(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return mib >= 1024 ? `${(mib / 1024).toFixed(1)} GiB` : `${mib.toFixed(1)} MiB`;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
