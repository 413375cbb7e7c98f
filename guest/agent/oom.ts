/**
 * OOM events: a container whose cgroup's memory.events `oom_kill` counter
 * rises has had a process killed for lack of memory. The kernel signals a
 * change of memory.events as a file modification, so each file is watched
 * (inotify through fs.watch). Events wait in a bounded queue until the host
 * asks for them (GetOOMEvent).
 */
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { parseKeyed } from "./cgroups.js";

const MAX_QUEUED = 64;

interface Watched {
  readonly path: string;
  readonly watcher: FSWatcher;
  kills: bigint;
}

export class OomMonitor {
  private readonly watched = new Map<string, Watched>();
  private readonly queue: string[] = [];
  private readonly waiters: ((containerId: string) => void)[] = [];

  constructor(private readonly log: Logger) {}

  /** Starts watching `memoryEvents` for `containerId`; false if the file cannot be watched. */
  async watch(containerId: string, memoryEvents: string): Promise<boolean> {
    this.unwatch(containerId);
    let kills: bigint;
    try {
      kills = await readKills(memoryEvents);
    } catch (err) {
      this.log.debug("no OOM events for this container", { containerId, err });
      return false;
    }
    let watcher: FSWatcher;
    try {
      watcher = watch(memoryEvents, { persistent: false }, () => void this.check(containerId));
    } catch (err) {
      this.log.warn("cannot watch for OOM events", { containerId, err });
      return false;
    }
    watcher.on("error", () => this.unwatch(containerId));
    this.watched.set(containerId, { path: memoryEvents, watcher, kills });
    return true;
  }

  unwatch(containerId: string): void {
    const w = this.watched.get(containerId);
    if (!w) return;
    this.watched.delete(containerId);
    w.watcher.close();
  }

  /** The id of the next container with an OOM kill, waiting for one if need be. */
  next(signal?: AbortSignal): Promise<string> {
    const queued = this.queue.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    if (signal?.aborted) return Promise.reject(new VmpodError("Canceled", "wait for OOM event canceled"));
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(deliver);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new VmpodError("Canceled", "wait for OOM event canceled"));
      };
      const deliver = (id: string) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(id);
      };
      this.waiters.push(deliver);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  close(): void {
    for (const id of [...this.watched.keys()]) this.unwatch(id);
  }

  /** Re-reads the counter; exposed so a watcher that missed a change can be caught up. */
  async check(containerId: string): Promise<void> {
    const w = this.watched.get(containerId);
    if (!w) return;
    let kills: bigint;
    try {
      kills = await readKills(w.path);
    } catch {
      return; // the cgroup is going away
    }
    if (kills <= w.kills) return;
    w.kills = kills;
    this.log.warn("container OOM-killed", { containerId });
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter(containerId);
      return;
    }
    if (this.queue.length >= MAX_QUEUED) this.queue.shift();
    this.queue.push(containerId);
  }
}

async function readKills(path: string): Promise<bigint> {
  return parseKeyed(await readFile(path, "utf8"))["oom_kill"] ?? 0n;
}
