/**
 * Pod and container records on disk, one JSON file each under the state
 * root, written atomically before what they describe is started, so that a
 * daemon that dies at any point finds on its next start what it had made.
 */
import { readFile, readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import { isSafeId } from "../common/ids.js";
import type { Logger } from "../common/log.js";
import type { OciProcess } from "../common/oci-spec.js";
import type { ContainerConfig, ContainerState, PodConfig } from "./types.js";

export interface PodRecord {
  readonly id: string;
  readonly config: PodConfig;
  readonly handler: string;
  /** Nanoseconds since the epoch, as a decimal string. */
  readonly createdAt: string;
  /** "creating" until the pod is up; "notready" once stopped or lost. */
  readonly state: "creating" | "ready" | "notready";
}

export interface ContainerRecord {
  readonly id: string;
  readonly podId: string;
  readonly config: ContainerConfig;
  readonly imageId: string;
  readonly imageRef: string;
  readonly state: ContainerState;
  readonly createdAt: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly exitCode: number;
  readonly reason: string;
  readonly message: string;
  /** Absolute. */
  readonly logPath: string;
  /** The container's process as its spec gives it: what an exec inherits (user, env, cwd). */
  readonly process?: OciProcess;
}

export class RecordStore {
  private readonly podsDir: string;
  private readonly containersDir: string;

  constructor(
    stateRoot: string,
    private readonly logger: Logger,
  ) {
    this.podsDir = join(stateRoot, "pods");
    this.containersDir = join(stateRoot, "containers");
  }

  savePod(record: PodRecord): Promise<void> {
    return writeFileAtomic(join(this.podsDir, `${record.id}.json`), JSON.stringify(record));
  }

  saveContainer(record: ContainerRecord): Promise<void> {
    return writeFileAtomic(join(this.containersDir, `${record.id}.json`), JSON.stringify(record));
  }

  async deletePod(id: string): Promise<void> {
    await rm(join(this.podsDir, `${id}.json`), { force: true });
  }

  async deleteContainer(id: string): Promise<void> {
    await rm(join(this.containersDir, `${id}.json`), { force: true });
  }

  loadPods(): Promise<PodRecord[]> {
    return this.load<PodRecord>(this.podsDir);
  }

  loadContainers(): Promise<ContainerRecord[]> {
    return this.load<ContainerRecord>(this.containersDir);
  }

  private async load<T extends { id: string }>(dir: string): Promise<T[]> {
    const out: T[] = [];
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.endsWith(".json") || name.startsWith(".")) continue;
      try {
        const record = JSON.parse(await readFile(join(dir, name), "utf8")) as T;
        if (!isSafeId(record.id) || `${record.id}.json` !== name) throw new Error("the record's id does not match its file name");
        out.push(record);
      } catch (err) {
        this.logger.warn("skipping an unreadable record", { file: join(dir, name), err: messageOf(err) });
      }
    }
    return out;
  }
}

/** Now, in nanoseconds since the epoch. */
export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
