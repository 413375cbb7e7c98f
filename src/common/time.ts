import { setTimeout as sleepTimer } from "node:timers/promises";

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return sleepTimer(ms, undefined, signal === undefined ? undefined : { signal });
}

/** Milliseconds elapsed since `start` (from performance.now()). */
export function since(start: number): number {
  return performance.now() - start;
}
