/**
 * A CNI runtime (spec 1.0, with configurations of 0.3.x and 0.4.0 too):
 * ADD runs the network's plugins in order, each given the result of the one
 * before; DEL runs them in reverse with the cached ADD result; CHECK runs
 * them in order against it. Plugins are found in the bin directories and
 * asked with VERSION whether they speak the configuration's cniVersion.
 */
import { stat } from "node:fs/promises";
import { VmpodError, kindOf, messageOf, wrap } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { loadNetworkList, type NetworkList, type PluginConf } from "./cni-config.js";
import { readCacheEntry, removeCacheEntry, writeCacheEntry, type CacheEntry } from "./cni-cache.js";
import { pluginFailure } from "./cni-errors.js";
import type { PluginExec } from "./cni-exec.js";
import { pluginEnv, pluginStdin, type CniCommand, type CniRuntimeConf } from "./cni-request.js";
import { parseCniResult, type CniResult } from "./cni-result.js";

export interface CniOptions {
  readonly confDir: string;
  readonly binDirs: readonly string[];
  readonly cacheDir: string;
  readonly pluginTimeoutMs: number;
  readonly exec: PluginExec;
  readonly logger: Logger;
}

export interface CniStatus {
  readonly ready: boolean;
  readonly message?: string;
}

export interface Cni {
  /** Ready when the configuration loads and every plugin it names is found and speaks its cniVersion. */
  status(): Promise<CniStatus>;
  /** Runs ADD through the chain; the attachment is cached (before the first plugin runs) for DEL. */
  add(rt: CniRuntimeConf, signal?: AbortSignal): Promise<CniResult>;
  /** Runs DEL in reverse with what ADD cached (or the current configuration); drops the cache entry. Tolerant of repeats. */
  del(rt: CniRuntimeConf, signal?: AbortSignal): Promise<void>;
  /** Runs CHECK against the cached result. */
  check(rt: CniRuntimeConf, signal?: AbortSignal): Promise<void>;
  /** Whether an attachment has a cache entry (ADD began and no DEL finished since). */
  cached(containerId: string, ifName: string): Promise<boolean>;
}

export function createCni(options: CniOptions): Cni {
  return new CniRuntime(options);
}

class CniRuntime implements Cni {
  /** Supported versions by plugin path and modification time. */
  private readonly versions = new Map<string, Promise<readonly string[]>>();

  constructor(private readonly o: CniOptions) {}

  async status(): Promise<CniStatus> {
    try {
      const list = await loadNetworkList(this.o.confDir);
      await this.resolve(list, undefined);
      return { ready: true };
    } catch (err) {
      return { ready: false, message: messageOf(err) };
    }
  }

  async add(rt: CniRuntimeConf, signal?: AbortSignal): Promise<CniResult> {
    const list = await loadNetworkList(this.o.confDir);
    const paths = await this.resolve(list, signal);
    await writeCacheEntry(this.o.cacheDir, { list, rt });
    let result: CniResult | undefined;
    for (const [i, plugin] of list.plugins.entries()) {
      const stdout = await this.call("ADD", plugin, paths[i] ?? "", list, rt, result, signal);
      if (stdout.trim() === "" && result !== undefined) continue; // passed the previous result on silently
      result = parseCniResult(parseJson(stdout, plugin, "ADD"), `CNI plugin ${plugin.type} ADD result`);
    }
    if (result === undefined) throw new VmpodError("Internal", `CNI network ${list.name}: no plugin printed a result`);
    await writeCacheEntry(this.o.cacheDir, { list, rt, result });
    return result;
  }

  async del(rt: CniRuntimeConf, signal?: AbortSignal): Promise<void> {
    let entry: CacheEntry | undefined;
    try {
      entry = await readCacheEntry(this.o.cacheDir, rt.containerId, rt.ifName);
    } catch (err) {
      this.o.logger.warn("CNI DEL without the cached ADD", { pod: rt.containerId, error: err });
    }
    let list = entry?.list;
    if (list === undefined) {
      try {
        list = await loadNetworkList(this.o.confDir);
      } catch (err) {
        if (entry === undefined && kindOf(err) === "NotFound") {
          this.o.logger.warn("CNI DEL skipped: no cached ADD and no configuration", { pod: rt.containerId });
          return;
        }
        throw err;
      }
    }
    // What ADD was given, with the netns as it is now ("" when gone).
    const delRt: CniRuntimeConf = entry ? { ...entry.rt, netnsPath: rt.netnsPath } : rt;
    const prev = versionAtLeast(list.cniVersion, "0.4.0") ? entry?.result : undefined;
    const paths = await this.find(list);
    for (let i = list.plugins.length - 1; i >= 0; i--) {
      const plugin = list.plugins[i];
      if (plugin === undefined) continue;
      await this.call("DEL", plugin, paths[i] ?? "", list, delRt, prev, signal);
    }
    await removeCacheEntry(this.o.cacheDir, rt.containerId, rt.ifName);
  }

  async check(rt: CniRuntimeConf, signal?: AbortSignal): Promise<void> {
    const list = await loadNetworkList(this.o.confDir);
    if (!versionAtLeast(list.cniVersion, "0.4.0")) throw new VmpodError("FailedPrecondition", `${list.source}: CHECK needs cniVersion 0.4.0 or later, not ${list.cniVersion}`);
    if (list.disableCheck) return;
    const entry = await readCacheEntry(this.o.cacheDir, rt.containerId, rt.ifName);
    if (entry?.result === undefined) throw new VmpodError("NotFound", `no cached CNI ADD result for ${rt.containerId}/${rt.ifName}`);
    const paths = await this.resolve(list, signal);
    for (const [i, plugin] of list.plugins.entries()) {
      await this.call("CHECK", plugin, paths[i] ?? "", list, { ...entry.rt, netnsPath: rt.netnsPath }, entry.result, signal);
    }
  }

  async cached(containerId: string, ifName: string): Promise<boolean> {
    try {
      return (await readCacheEntry(this.o.cacheDir, containerId, ifName)) !== undefined;
    } catch {
      return true; // damaged, but there
    }
  }

  /** The plugins' paths, each checked to speak the list's cniVersion. */
  private async resolve(list: NetworkList, signal: AbortSignal | undefined): Promise<string[]> {
    const paths = await this.find(list);
    for (const [i, plugin] of list.plugins.entries()) {
      const path = paths[i] ?? "";
      const supported = await this.supportedVersions(plugin, path, list, signal);
      if (!supported.includes(list.cniVersion)) {
        throw new VmpodError("FailedPrecondition", `CNI plugin ${plugin.type} (${path}) does not speak cniVersion ${list.cniVersion} of ${list.source} (it speaks ${supported.join(", ")})`);
      }
    }
    return paths;
  }

  private async find(list: NetworkList): Promise<string[]> {
    const paths: string[] = [];
    for (const plugin of list.plugins) {
      const path = await this.o.exec.find(plugin.type, this.o.binDirs);
      if (path === undefined) throw new VmpodError("FailedPrecondition", `CNI plugin ${plugin.type} of ${list.source} is not in ${this.o.binDirs.join(", ")}`);
      paths.push(path);
    }
    return paths;
  }

  private async supportedVersions(plugin: PluginConf, path: string, list: NetworkList, signal: AbortSignal | undefined): Promise<readonly string[]> {
    let key = path;
    try {
      key = `${path}@${(await stat(path)).mtimeMs}`;
    } catch {
      // a plugin that is no file (a fake) or went: known by its path alone
    }
    let pending = this.versions.get(key);
    if (!pending) {
      pending = this.askVersion(plugin, path, list, signal);
      this.versions.set(key, pending);
      pending.catch(() => this.versions.delete(key));
    }
    return pending;
  }

  private async askVersion(plugin: PluginConf, path: string, list: NetworkList, signal: AbortSignal | undefined): Promise<readonly string[]> {
    const out = await this.run("VERSION", plugin, path, pluginEnv("VERSION", undefined, this.o.binDirs), JSON.stringify({ cniVersion: list.cniVersion }), signal);
    const doc = parseJson(out, plugin, "VERSION") as { supportedVersions?: unknown };
    if (!Array.isArray(doc.supportedVersions)) return ["0.1.0", "0.2.0"]; // plugins from before VERSION listed them
    return doc.supportedVersions.filter((v): v is string => typeof v === "string");
  }

  private call(command: CniCommand, plugin: PluginConf, path: string, list: NetworkList, rt: CniRuntimeConf, prev: CniResult | undefined, signal: AbortSignal | undefined): Promise<string> {
    return this.run(command, plugin, path, pluginEnv(command, rt, this.o.binDirs), pluginStdin(list, plugin, rt.capabilityArgs, prev), signal);
  }

  private async run(command: CniCommand, plugin: PluginConf, path: string, env: Record<string, string>, stdin: string, signal: AbortSignal | undefined): Promise<string> {
    const started = performance.now();
    let out;
    try {
      out = await this.o.exec.exec({ type: plugin.type, path, env, stdin, timeoutMs: this.o.pluginTimeoutMs, ...(signal ? { signal } : {}) });
    } catch (err) {
      throw err instanceof VmpodError ? err : wrap(`CNI plugin ${plugin.type} ${command}`, err);
    }
    this.o.logger.debug("CNI plugin ran", { plugin: plugin.type, command, exitCode: out.exitCode, ms: Math.round(performance.now() - started) });
    if (out.exitCode !== 0) throw pluginFailure(plugin.type, command, out.exitCode, out.stdout, out.stderr);
    return out.stdout;
  }
}

function parseJson(text: string, plugin: PluginConf, command: CniCommand): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new VmpodError("Internal", `CNI plugin ${plugin.type} ${command} printed no JSON: ${messageOf(err)}`);
  }
}

/** a >= b for dotted versions. */
export function versionAtLeast(a: string, b: string): boolean {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i] ?? 0;
    const y = pb[i] ?? 0;
    if (x !== y) return x > y;
  }
  return true;
}
