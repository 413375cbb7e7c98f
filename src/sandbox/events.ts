/**
 * Container lifecycle events, fanned out to every subscriber (each
 * GetContainerEvents stream) from the moment it subscribes. A subscriber
 * that does not keep up loses the oldest events past a bound, never blocks
 * the runtime.
 */
import type { ContainerEvent } from "./types.js";

const MAX_QUEUED = 1024;

export class EventBus {
  private readonly subscribers = new Set<{ queue: ContainerEvent[]; wake: (() => void) | undefined }>();

  publish(event: ContainerEvent): void {
    for (const s of this.subscribers) {
      s.queue.push(event);
      if (s.queue.length > MAX_QUEUED) s.queue.shift();
      s.wake?.();
    }
  }

  async *subscribe(signal?: AbortSignal): AsyncGenerator<ContainerEvent> {
    const subscriber: { queue: ContainerEvent[]; wake: (() => void) | undefined } = { queue: [], wake: undefined };
    this.subscribers.add(subscriber);
    const onAbort = () => subscriber.wake?.();
    signal?.addEventListener("abort", onAbort);
    try {
      while (!signal?.aborted) {
        const next = subscriber.queue.shift();
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => (subscriber.wake = resolve));
        subscriber.wake = undefined;
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      this.subscribers.delete(subscriber);
    }
  }
}
