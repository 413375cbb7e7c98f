/**
 * The operator's view of the VM templates on disk (`vmpod factory show`,
 * `destroy`, `vmpod env`, and the daemon stopping its own build at
 * shutdown): the templates under the template path with what their
 * manifests say, the builds still unfinished there and whose they are,
 * which template is the configured default shape's, and removing them.
 *
 * Removing a template is safe while a daemon runs: its store looks for the
 * manifest before each use and checks the state against it, so a template
 * that is gone is built again (or the pod boots cold), and a pod already
 * restoring keeps reading the state file it opened. A build still running
 * in a live process is left alone.
 */
import { lstat, readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { killProcessesMentioning, processAlive } from "../common/processes.js";
import type { VmEngine } from "./engine.js";
import { TEMPLATE_FORMAT, templateKey, type TemplateKey } from "./template-key.js";
import { buildWorkDir, MANIFEST_FILE } from "./template-store.js";


/** What a template's manifest says, and what the operator is told about it. */
export interface TemplateEntry {
  readonly key: string;
  readonly dir: string;
  /** The saved files' sizes added up, from the manifest. */
  readonly sizeBytes?: number;
  /** The space the directory's files take on disk (the guest's memory is sparse). */
  readonly diskBytes: number;
  readonly builtAt?: string;
  readonly buildMs?: number;
  /** The identities of QEMU and the guest files it was built from. */
  readonly files?: unknown;
  /** Why the daemon would not use it (unreadable or foreign manifest); it is then removed at its next use. */
  readonly problem?: string;
}

/** A build's working directory. */
export interface UnfinishedBuild {
  readonly name: string;
  readonly path: string;
  readonly key: string;
  readonly pid: number;
  /** Whether the building process still runs. */
  readonly alive: boolean;
}

export interface TemplateListing {
  readonly dir: string;
  /** False when the template path does not exist yet: no templates, not an error. */
  readonly exists: boolean;
  readonly templates: readonly TemplateEntry[];
  readonly unfinished: readonly UnfinishedBuild[];
}

/**
 * How a template relates to the configured default shape: its own
 * (`current`), another shape's built from the same QEMU and guest files
 * (pods of other sizes use it), built from other files (`stale`: no VM
 * will use it again; the daemon removes it after its next build), or
 * `broken`. `unknown` when the current key cannot be computed.
 */
export type TemplateStatus = "current" | "other-shape" | "stale" | "broken" | "unknown";

export type IsAlive = (pid: number) => boolean;

/** The templates and unfinished builds in `dir`, by key. */
export async function listTemplates(dir: string, isAlive: IsAlive = processAlive): Promise<TemplateListing> {
  let names: string[];
  try {
    names = (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return { dir, exists: false, templates: [], unfinished: [] };
    throw new VmpodError("Unavailable", `read template path ${dir}`, { cause: err });
  }
  const templates: TemplateEntry[] = [];
  const unfinished: UnfinishedBuild[] = [];
  for (const name of names.sort()) {
    const building = buildWorkDir(name);
    if (building) {
      unfinished.push({ name, path: join(dir, name), key: building.key, pid: building.pid, alive: isAlive(building.pid) });
    } else {
      templates.push(await readEntry(dir, name));
    }
  }
  return { dir, exists: true, templates, unfinished };
}

async function readEntry(root: string, key: string): Promise<TemplateEntry> {
  const dir = join(root, key);
  const diskBytes = await diskUsage(dir);
  let manifest: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(await readFile(join(dir, MANIFEST_FILE), "utf8"));
    if (typeof parsed !== "object" || parsed === null) return { key, dir, diskBytes, problem: "the manifest is not an object" };
    manifest = parsed as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { key, dir, diskBytes, problem: code === "ENOENT" ? "no manifest" : "manifest unreadable" };
  }
  const entry = {
    key,
    dir,
    diskBytes,
    ...sizeOf(manifest),
    ...(typeof manifest.builtAt === "string" ? { builtAt: manifest.builtAt } : {}),
    ...(typeof manifest.buildMs === "number" ? { buildMs: manifest.buildMs } : {}),
    ...(typeof manifest.inputs === "object" && manifest.inputs !== null && "files" in manifest.inputs ? { files: manifest.inputs.files } : {}),
  };
  if (manifest.format !== TEMPLATE_FORMAT) return { ...entry, problem: `format ${String(manifest.format)}, this vmpod reads ${TEMPLATE_FORMAT}` };
  if (manifest.key !== key) return { ...entry, problem: "the manifest is another template's" };
  return entry;
}

/** The bytes the files under `dir` take on disk (allocated blocks); what cannot be read counts nothing. */
async function diskUsage(dir: string): Promise<number> {
  const names = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  let bytes = 0;
  for (const name of names) {
    const st = await lstat(join(dir, name)).catch(() => undefined);
    if (st?.isFile()) bytes += st.blocks * 512;
  }
  return bytes;
}

/**
 * The bytes the manifest gives its files: one `size` (the state alone), or a
 * size for each saved file (`state`, `memory`: `{ size, sha256 }`).
 */
function sizeOf(manifest: Record<string, unknown>): { sizeBytes?: number } {
  if (typeof manifest.size === "number") return { sizeBytes: manifest.size };
  const sizes = Object.values(manifest).map((v) => (typeof v === "object" && v !== null && "sha256" in v && "size" in v && typeof v.size === "number" ? v.size : undefined));
  const known = sizes.filter((n): n is number => n !== undefined);
  return known.length > 0 ? { sizeBytes: known.reduce((a, b) => a + b, 0) } : {};
}

/** `entry` measured against the current key of the default shape (undefined: not computable). */
export function templateStatus(entry: TemplateEntry, current: TemplateKey | undefined): TemplateStatus {
  if (entry.problem !== undefined) return "broken";
  if (current === undefined) return "unknown";
  if (entry.key === current.key) return "current";
  return JSON.stringify(entry.files) === JSON.stringify(current.inputs.files) ? "other-shape" : "stale";
}

/**
 * The key of the template the daemon builds at start and uses for pods of
 * the configured size: the same spec `VmEngine.warmUp` asks its store for.
 */
export function defaultTemplateKey(engine: VmEngine): Promise<TemplateKey> {
  return templateKey(engine.templateVmFor({ id: "warm-up" }).spec);
}

export interface DestroyResult {
  /** Template keys removed. */
  readonly removed: readonly string[];
  /** Unfinished builds of dead processes removed (with any QEMU they left). */
  readonly abandoned: readonly string[];
  /** Unfinished builds left alone: their process still runs. */
  readonly building: readonly string[];
}

/**
 * Removes the templates `keys` (every one with "all"), and the unfinished
 * builds whose process is gone, killing any QEMU they left. An unknown key
 * removes nothing and throws NotFound.
 */
export async function destroyTemplates(dir: string, keys: readonly string[] | "all", isAlive: IsAlive = processAlive): Promise<DestroyResult> {
  const listing = await listTemplates(dir, isAlive);
  const known = new Set(listing.templates.map((t) => t.key));
  const unknown = keys === "all" ? [] : keys.filter((k) => !known.has(k));
  if (unknown.length > 0) {
    throw new VmpodError("NotFound", `no template ${unknown.join(", ")} in ${dir}${known.size > 0 ? ` (there are: ${[...known].join(", ")})` : listing.exists ? " (it holds none)" : " (it does not exist)"}`);
  }
  const chosen = keys === "all" ? [...known] : [...new Set(keys)];
  for (const key of chosen) await rm(join(dir, key), { recursive: true, force: true });
  const abandoned: string[] = [];
  const building: string[] = [];
  for (const u of listing.unfinished) {
    if (u.alive) {
      building.push(u.name);
      continue;
    }
    await killProcessesMentioning(u.path);
    await rm(u.path, { recursive: true, force: true });
    abandoned.push(u.name);
  }
  return { removed: chosen, abandoned, building };
}

/**
 * Waits while another live process (a running daemon) builds the template
 * `key` in `dir`, so that a second build of it is not started beside it.
 * Resolves with the pids that were waited for; rejects when `signal`
 * aborts (their builds go on).
 */
export async function waitForOthersBuilding(dir: string, key: string, options: { isAlive?: IsAlive; signal?: AbortSignal; pollMs?: number } = {}): Promise<number[]> {
  const isAlive = options.isAlive ?? processAlive;
  const waited = new Set<number>();
  for (;;) {
    options.signal?.throwIfAborted();
    const others = (await listTemplates(dir, isAlive)).unfinished.filter((u) => u.key === key && u.alive && u.pid !== process.pid);
    if (others.length === 0) return [...waited];
    for (const u of others) waited.add(u.pid);
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 500));
  }
}
