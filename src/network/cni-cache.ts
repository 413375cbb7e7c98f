/**
 * What CNI DEL needs after a restart, kept on disk per attachment: the
 * network configuration ADD ran with, its CNI_ARGS and capability values,
 * and (once ADD finished) its result. Written before ADD starts, so a crash
 * in the middle of the chain still leaves what DEL must run with.
 */
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import { isSafeId } from "../common/ids.js";
import { networkListFromObject, type NetworkList } from "./cni-config.js";
import type { CniCapabilityArgs, CniRuntimeConf } from "./cni-request.js";
import { encodeCniResult, parseCniResult, type CniResult } from "./cni-result.js";

const KIND = "vmpod-cni-cache-v1";

export interface CacheEntry {
  readonly list: NetworkList;
  readonly rt: CniRuntimeConf;
  readonly result?: CniResult;
}

export function cachePath(cacheDir: string, containerId: string, ifName: string): string {
  if (!isSafeId(containerId) || !isSafeId(ifName)) throw new VmpodError("InvalidArgument", `no cache entry can be named after ${JSON.stringify(containerId)} and ${JSON.stringify(ifName)}`);
  return join(cacheDir, "results", `${containerId}-${ifName}.json`);
}

export async function writeCacheEntry(cacheDir: string, entry: CacheEntry): Promise<void> {
  const doc = {
    kind: KIND,
    containerId: entry.rt.containerId,
    ifName: entry.rt.ifName,
    netnsPath: entry.rt.netnsPath,
    args: entry.rt.args,
    capabilityArgs: entry.rt.capabilityArgs,
    configSource: entry.list.source,
    config: entry.list.raw,
    ...(entry.result ? { result: encodeCniResult(entry.result, entry.list.cniVersion) } : {}),
  };
  await writeFileAtomic(cachePath(cacheDir, entry.rt.containerId, entry.rt.ifName), JSON.stringify(doc, null, 2) + "\n");
}

/** The entry of an attachment; undefined when there is none. A damaged entry is an Internal error. */
export async function readCacheEntry(cacheDir: string, containerId: string, ifName: string): Promise<CacheEntry | undefined> {
  const path = cachePath(cacheDir, containerId, ifName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new VmpodError("Internal", `read ${path}`, { cause: err });
  }
  try {
    const doc = JSON.parse(text) as Record<string, unknown>;
    if (doc.kind !== KIND || doc.containerId !== containerId || doc.ifName !== ifName) throw new Error("not a CNI cache entry of this attachment");
    if (typeof doc.netnsPath !== "string" || !Array.isArray(doc.args)) throw new Error("no runtime values");
    const args = (doc.args as unknown[]).map((a) => {
      if (!Array.isArray(a) || a.length !== 2 || typeof a[0] !== "string" || typeof a[1] !== "string") throw new Error("bad args");
      return [a[0], a[1]] as const;
    });
    const list = networkListFromObject(doc.config, typeof doc.configSource === "string" ? doc.configSource : path);
    const capabilityArgs = (doc.capabilityArgs !== null && typeof doc.capabilityArgs === "object" ? doc.capabilityArgs : {}) as CniCapabilityArgs;
    return {
      list,
      rt: { containerId, ifName, netnsPath: doc.netnsPath, args, capabilityArgs },
      ...(doc.result !== undefined ? { result: parseCniResult(doc.result, path) } : {}),
    };
  } catch (err) {
    throw new VmpodError("Internal", `damaged CNI cache entry ${path}`, { cause: err });
  }
}

export async function removeCacheEntry(cacheDir: string, containerId: string, ifName: string): Promise<void> {
  await rm(cachePath(cacheDir, containerId, ifName), { force: true });
}
