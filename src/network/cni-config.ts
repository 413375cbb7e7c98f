/**
 * The CNI network configuration: the lexically first `*.conflist`, `*.conf`
 * or `*.json` of the configuration directory, as a list of plugins (a file
 * holding one plugin's configuration is wrapped in a list of one), checked
 * for what the runtime relies on.
 */
import { readdir, readFile } from "node:fs/promises";
import { extname, join } from "node:path";
import { VmpodError, messageOf } from "../common/errors.js";

/** The cniVersion values of configurations this runtime runs. */
export const SUPPORTED_CNI_VERSIONS: readonly string[] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"];

const EXTENSIONS = [".conflist", ".conf", ".json"];

export interface PluginConf {
  /** The plugin binary's name. */
  readonly type: string;
  /** The capabilities the plugin declares (`"capabilities": {"portMappings": true}`). */
  readonly capabilities: readonly string[];
  /** The plugin's object as written, handed to it with name, cniVersion and the runtime's additions. */
  readonly raw: Readonly<Record<string, unknown>>;
}

export interface NetworkList {
  readonly name: string;
  readonly cniVersion: string;
  readonly disableCheck: boolean;
  readonly plugins: readonly PluginConf[];
  /** The file it came from. */
  readonly source: string;
  /** The list as an object, as kept in the cache for DEL. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** The configuration files of `confDir`, in the order they are considered. */
export async function configFiles(confDir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(confDir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new VmpodError("Internal", `read CNI configuration directory ${confDir}`, { cause: err });
  }
  return entries
    .filter((e) => (e.isFile() || e.isSymbolicLink()) && EXTENSIONS.includes(extname(e.name)))
    .map((e) => e.name)
    .sort()
    .map((name) => join(confDir, name));
}

/** The network of the lexically first configuration file; NotFound when there is none. */
export async function loadNetworkList(confDir: string): Promise<NetworkList> {
  const [first] = await configFiles(confDir);
  if (first === undefined) throw new VmpodError("NotFound", `no CNI network configuration (*.conflist, *.conf, *.json) in ${confDir}`);
  let text: string;
  try {
    text = await readFile(first, "utf8");
  } catch (err) {
    throw new VmpodError("Internal", `read CNI configuration ${first}`, { cause: err });
  }
  return parseNetworkList(text, first);
}

export function parseNetworkList(text: string, source: string): NetworkList {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new VmpodError("InvalidArgument", `${source}: not JSON: ${messageOf(err)}`);
  }
  return networkListFromObject(doc, source);
}

/** A list object (a file's JSON, or a cached copy) → NetworkList. */
export function networkListFromObject(doc: unknown, source: string): NetworkList {
  if (!isObject(doc)) throw invalid(source, "the configuration must be a JSON object");
  const list = Array.isArray(doc.plugins) ? doc : { cniVersion: doc.cniVersion, name: doc.name, plugins: [doc] };
  const name = list.name;
  if (typeof name !== "string" || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) throw invalid(source, `"name" must be a network name (letters, digits, _ . -), not ${JSON.stringify(name)}`);
  const version = list.cniVersion;
  if (typeof version !== "string" || !SUPPORTED_CNI_VERSIONS.includes(version)) {
    throw invalid(source, `"cniVersion" ${JSON.stringify(version)} is not supported (supported: ${SUPPORTED_CNI_VERSIONS.join(", ")})`);
  }
  const disableCheck = "disableCheck" in list ? list.disableCheck : false;
  if (typeof disableCheck !== "boolean") throw invalid(source, `"disableCheck" must be true or false`);
  const plugins = list.plugins as unknown[];
  if (plugins.length === 0) throw invalid(source, `"plugins" is empty`);
  return {
    name,
    cniVersion: version,
    disableCheck,
    plugins: plugins.map((p, i) => pluginFromObject(p, `${source}: plugins[${i}]`)),
    source,
    raw: list,
  };
}

function pluginFromObject(p: unknown, where: string): PluginConf {
  if (!isObject(p)) throw new VmpodError("InvalidArgument", `${where} must be an object`);
  if (typeof p.type !== "string" || !/^[A-Za-z0-9_.-]+$/.test(p.type) || p.type === "." || p.type === "..") {
    throw new VmpodError("InvalidArgument", `${where}: "type" must be a plugin name, not ${JSON.stringify(p.type)}`);
  }
  const caps = p.capabilities;
  if (caps !== undefined && !isObject(caps)) throw new VmpodError("InvalidArgument", `${where}: "capabilities" must be an object`);
  const capabilities = Object.entries(caps ?? {})
    .filter(([, on]) => on === true)
    .map(([k]) => k);
  return { type: p.type, capabilities, raw: p };
}

function invalid(source: string, message: string): VmpodError {
  return new VmpodError("InvalidArgument", `${source}: ${message}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
