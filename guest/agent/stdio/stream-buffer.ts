/**
 * The output of a process (or a forwarded connection) held for the host.
 *
 * - read(max) returns as soon as any bytes are buffered (up to `max`), waits
 *   as long as it takes otherwise, and returns empty data at end of stream.
 *   A read whose caller goes away (abort signal) takes nothing.
 * - What arrives before anyone reads is kept, up to `limit` bytes (plus at
 *   most one chunk of the source); then the source is paused, so the writer
 *   blocks on a full pipe: nothing is ever dropped. Reading below the limit
 *   resumes it.
 * - A source error ends the stream like an end of file (a pty master reads
 *   EIO once the last holder of the slave is gone).
 */
import type { Readable } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";

export const DEFAULT_BUFFER_LIMIT = 1 << 20;

interface Waiter {
  readonly max: number;
  resolve(data: Buffer): void;
}

export class StreamBuffer {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private eof = false;
  private paused = false;
  private readonly waiters: Waiter[] = [];
  private settleWaiters: (() => void)[] = [];

  constructor(
    private readonly source: Readable | undefined,
    private readonly limit = DEFAULT_BUFFER_LIMIT,
  ) {
    if (!source) {
      this.eof = true;
      return;
    }
    source.on("data", (chunk: Buffer | string) => this.onData(typeof chunk === "string" ? Buffer.from(chunk) : chunk));
    source.on("end", () => this.onEnd());
    source.on("error", () => this.onEnd());
    source.on("close", () => this.onEnd());
  }

  /** A stream that is at its end from the start (stderr of a terminal). */
  static ended(): StreamBuffer {
    return new StreamBuffer(undefined);
  }

  /** Bytes buffered and not yet read. */
  get length(): number {
    return this.buffered;
  }

  /** True once the source has ended: what is buffered is all there will be. */
  get ended(): boolean {
    return this.eof;
  }

  /** True when the source is held back because the buffer is full. */
  get isFull(): boolean {
    return this.paused;
  }

  read(max: number, signal?: AbortSignal): Promise<Buffer> {
    if (!Number.isInteger(max) || max <= 0) throw new VmpodError("InvalidArgument", `read length must be positive, got ${max}`);
    if (signal?.aborted) return Promise.reject(new VmpodError("Canceled", "read canceled"));
    if (this.buffered > 0 && this.waiters.length === 0) return Promise.resolve(this.take(max));
    if (this.eof && this.buffered === 0) return Promise.resolve(Buffer.alloc(0));
    return new Promise<Buffer>((resolve, reject) => {
      const onAbort = () => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new VmpodError("Canceled", "read canceled"));
      };
      const waiter: Waiter = {
        max,
        resolve: (data) => {
          signal?.removeEventListener("abort", onAbort);
          resolve(data);
        },
      };
      this.waiters.push(waiter);
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /**
   * Resolves once the source has nothing more to hand over by itself: it has
   * ended, or it is held back by a full buffer (the host must read first).
   */
  settled(): Promise<void> {
    if (this.eof || this.paused) return Promise.resolve();
    return new Promise((resolve) => this.settleWaiters.push(resolve));
  }

  /** Drops what is buffered, stops the source and answers every pending read with end of stream. */
  close(): void {
    this.chunks.length = 0;
    this.buffered = 0;
    if (this.source && !this.source.destroyed) this.source.destroy();
    this.onEnd();
  }

  private onData(chunk: Buffer): void {
    if (this.eof || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    this.serve();
    if (this.buffered >= this.limit && !this.paused && this.source) {
      this.paused = true;
      this.source.pause();
      this.notifySettled();
    }
  }

  private onEnd(): void {
    if (this.eof) return;
    this.eof = true;
    this.serve();
    this.notifySettled();
  }

  private serve(): void {
    while (this.waiters.length > 0 && (this.buffered > 0 || this.eof)) {
      const waiter = this.waiters.shift() as Waiter;
      waiter.resolve(this.buffered > 0 ? this.take(waiter.max) : Buffer.alloc(0));
    }
  }

  private take(max: number): Buffer {
    const parts: Buffer[] = [];
    let size = 0;
    while (size < max && this.chunks.length > 0) {
      const head = this.chunks[0] as Buffer;
      const want = max - size;
      if (head.length <= want) {
        parts.push(head);
        size += head.length;
        this.chunks.shift();
      } else {
        parts.push(head.subarray(0, want));
        this.chunks[0] = head.subarray(want);
        size += want;
      }
    }
    this.buffered -= size;
    if (this.paused && this.buffered < this.limit && !this.eof && this.source) {
      this.paused = false;
      this.source.resume();
    }
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts, size);
  }

  private notifySettled(): void {
    const waiters = this.settleWaiters;
    this.settleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
