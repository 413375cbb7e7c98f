/**
 * A pod's network record, `<cache dir>/<pod id>.json`: written before the
 * netns is made and completed with the attachment once everything is set
 * up, so that tearing down after a crash at any step, or after a restart,
 * knows what there is to undo.
 */
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import type { InterNetworkingModel } from "../config/types.js";
import type { PodNetworkAttachment, PortMapping } from "./types.js";

const KIND = "vmpod-pod-network-v1";
const POD_ID = /^[0-9a-f]{64}$/;

export interface PodNetworkRecord {
  readonly podId: string;
  readonly netnsName: string;
  readonly model: InterNetworkingModel;
  /** False for a pod whose containers run in the netns itself (no tap or macvtap made); absent means true. */
  readonly vmLink?: boolean;
  readonly pod: { readonly name: string; readonly namespace: string; readonly uid: string };
  readonly portMappings: readonly PortMapping[];
  /** Present once set-up finished. */
  readonly attachment?: Omit<PodNetworkAttachment, "tapFd">;
}

export function recordPath(cacheDir: string, podId: string): string {
  if (!POD_ID.test(podId)) throw new VmpodError("InvalidArgument", `pod id ${JSON.stringify(podId)} is not 64 hex characters`);
  return join(cacheDir, `${podId}.json`);
}

export async function writeRecord(cacheDir: string, record: PodNetworkRecord): Promise<void> {
  await writeFileAtomic(recordPath(cacheDir, record.podId), JSON.stringify({ kind: KIND, ...record }, null, 2) + "\n");
}

/** The record of a pod; undefined when there is none. A damaged record is an Internal error. */
export async function readRecord(cacheDir: string, podId: string): Promise<PodNetworkRecord | undefined> {
  const path = recordPath(cacheDir, podId);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new VmpodError("Internal", `read ${path}`, { cause: err });
  }
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (err) {
    throw new VmpodError("Internal", `damaged pod network record ${path}`, { cause: err });
  }
  const pod = doc.pod as Record<string, unknown> | undefined;
  if (
    doc.kind !== KIND ||
    doc.podId !== podId ||
    typeof doc.netnsName !== "string" ||
    (doc.model !== "tcfilter" && doc.model !== "macvtap") ||
    typeof pod?.name !== "string" ||
    typeof pod.namespace !== "string" ||
    typeof pod.uid !== "string" ||
    !Array.isArray(doc.portMappings)
  ) {
    throw new VmpodError("Internal", `damaged pod network record ${path}`);
  }
  const record: Record<string, unknown> = { ...doc };
  delete record.kind;
  return record as unknown as PodNetworkRecord;
}

export async function removeRecord(cacheDir: string, podId: string): Promise<void> {
  await rm(recordPath(cacheDir, podId), { force: true });
}

/** The pod ids with a record. */
export async function recordedPods(cacheDir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(cacheDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw new VmpodError("Internal", `read ${cacheDir}`, { cause: err });
  }
  return names
    .filter((n) => /^[0-9a-f]{64}\.json$/.test(n))
    .map((n) => n.slice(0, -".json".length))
    .sort();
}
