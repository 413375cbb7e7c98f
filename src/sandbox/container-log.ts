/**
 * A container's log file in the CRI format kubelet reads and rotates:
 *
 *     2024-05-01T10:00:00.123456789+02:00 stdout F one whole line
 *     2024-05-01T10:00:00.2Z stderr P the first 16 KiB of a longer line...
 *
 * Lines are split at "\n" only ("\r" stays in the content); a line longer
 * than the maximum is cut into P records of exactly that many bytes, its
 * last piece F. Output that ends without a newline is written as a P record
 * when the stream ends, so a reader can tell it was never terminated. The
 * timestamp is the time the record is written, local time, formatted as Go's
 * time.RFC3339Nano (fraction without trailing zeros, "Z" for UTC).
 *
 * stdout and stderr write through one queue, a record (in fact each chunk's
 * records) in one append, so they never interleave within a record; a
 * reader of the container's output waits for its records to be written
 * before it reads more, so nothing is buffered beyond one chunk and one
 * unfinished line. reopen() (ReopenContainerLog, after kubelet renamed the
 * file) takes its turn in the same queue: every record lands whole in the
 * old file or the new one.
 */
import type { FileHandle } from "node:fs/promises";
import { mkdir, open } from "node:fs/promises";
import { dirname } from "node:path";
import { VmpodError, wrap } from "../common/errors.js";

export type LogStream = "stdout" | "stderr";

export const DEFAULT_MAX_LINE_BYTES = 16 * 1024;

export interface ContainerLogOptions {
  /** The longest content of one record; longer lines are split (default 16 KiB). */
  readonly maxLineBytes?: number;
  /** Nanoseconds since the epoch (default: the wall clock with sub-millisecond precision). */
  readonly now?: () => bigint;
  /** Minutes east of UTC at an instant (default: the local time zone's). */
  readonly utcOffsetMinutes?: (epochMs: number) => number;
  /** Told of records that could not be written (they are dropped; reading goes on). */
  readonly onError?: (err: unknown) => void;
}

const pad = (n: number, width = 2) => String(n).padStart(width, "0");

/** `epochNs` as Go formats time.RFC3339Nano in a zone `offsetMinutes` east of UTC. */
export function formatRfc3339Nano(epochNs: bigint, offsetMinutes: number): string {
  const secs = epochNs >= 0n ? epochNs / 1_000_000_000n : -((-epochNs + 999_999_999n) / 1_000_000_000n);
  const nanos = Number(epochNs - secs * 1_000_000_000n);
  const local = new Date((Number(secs) + offsetMinutes * 60) * 1000);
  let out = `${pad(local.getUTCFullYear(), 4)}-${pad(local.getUTCMonth() + 1)}-${pad(local.getUTCDate())}T${pad(local.getUTCHours())}:${pad(local.getUTCMinutes())}:${pad(local.getUTCSeconds())}`;
  if (nanos !== 0) out += `.${pad(nanos, 9).replace(/0+$/, "")}`;
  if (offsetMinutes === 0) return `${out}Z`;
  const abs = Math.abs(offsetMinutes);
  return `${out}${offsetMinutes < 0 ? "-" : "+"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`;
}

export function localUtcOffsetMinutes(epochMs: number): number {
  const west = new Date(epochMs).getTimezoneOffset();
  return west === 0 ? 0 : -west;
}

let anchorNs = BigInt(Date.now()) * 1_000_000n;
let anchorHr = process.hrtime.bigint();

/** The wall clock in nanoseconds: monotonic steps on a wall-clock anchor, re-anchored when the wall clock moves. */
export function wallClockNs(): bigint {
  const candidate = anchorNs + (process.hrtime.bigint() - anchorHr);
  const wall = BigInt(Date.now()) * 1_000_000n;
  const drift = candidate - wall;
  if (drift > 2_000_000n || drift < -2_000_000n) {
    anchorNs = wall;
    anchorHr = process.hrtime.bigint();
    return wall;
  }
  return candidate;
}

export interface LogLine {
  readonly content: Buffer;
  /** false: a P record (the line goes on, or ended without a newline). */
  readonly full: boolean;
}

/** Cuts a byte stream into CRI log records' contents. */
export class LineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly maxLineBytes = DEFAULT_MAX_LINE_BYTES) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) throw new RangeError(`maxLineBytes ${maxLineBytes} must be a positive integer`);
  }

  push(chunk: Uint8Array): LogLine[] {
    const out: LogLine[] = [];
    const data = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      const segment = data.subarray(start, nl < 0 ? data.length : nl);
      if (segment.length > 0) {
        this.pending.push(segment);
        this.pendingBytes += segment.length;
      }
      this.cutLong(out);
      if (nl < 0) break;
      out.push({ content: this.take(), full: true });
      start = nl + 1;
    }
    // Keep our own copy: the source may reuse its buffers.
    if (this.pendingBytes > 0) this.pending = [Buffer.from(this.take())];
    this.pendingBytes = this.pending[0]?.length ?? 0;
    return out;
  }

  /** What is left when the stream ends: one P record, or none. */
  end(): LogLine[] {
    if (this.pendingBytes === 0) return [];
    return [{ content: this.take(), full: false }];
  }

  private cutLong(out: LogLine[]): void {
    if (this.pendingBytes <= this.maxLineBytes) return;
    let all = this.take();
    while (all.length > this.maxLineBytes) {
      out.push({ content: all.subarray(0, this.maxLineBytes), full: false });
      all = all.subarray(this.maxLineBytes);
    }
    this.pending = [all];
    this.pendingBytes = all.length;
  }

  private take(): Buffer {
    const all = this.pending.length === 1 ? (this.pending[0] as Buffer) : Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return all;
  }
}

export function formatRecords(stream: LogStream, lines: readonly LogLine[], timestamp: string): Buffer {
  const parts: Buffer[] = [];
  for (const line of lines) {
    parts.push(Buffer.from(`${timestamp} ${stream} ${line.full ? "F" : "P"} `), line.content, Buffer.from("\n"));
  }
  return Buffer.concat(parts);
}

export class ContainerLog {
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  private constructor(
    readonly path: string,
    private file: FileHandle | undefined,
    private readonly options: ContainerLogOptions,
  ) {}

  /** Opens (creating it 0640, and its directory) the log file for appending. */
  static async open(path: string, options: ContainerLogOptions = {}): Promise<ContainerLog> {
    try {
      await mkdir(dirname(path), { recursive: true, mode: 0o755 });
      return new ContainerLog(path, await open(path, "a", 0o640), options);
    } catch (err) {
      throw wrap(`open container log ${path}`, err);
    }
  }

  /** Writes `source`'s output as `stream` records until it ends; a source error ends it after what was read is written. */
  async consume(stream: LogStream, source: AsyncIterable<Uint8Array | string>): Promise<void> {
    const splitter = new LineSplitter(this.options.maxLineBytes);
    try {
      for await (const chunk of source) {
        const lines = splitter.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
        if (lines.length > 0) await this.write(stream, lines);
      }
    } catch (err) {
      await this.write(stream, splitter.end());
      throw wrap(`read container ${stream}`, err, "Unavailable");
    }
    await this.write(stream, splitter.end());
  }

  /** Closes the file and opens the path again (after kubelet renamed it): later records go to the new file. */
  reopen(): Promise<void> {
    return this.enqueue(async () => {
      if (this.closed) return;
      const old = this.file;
      this.file = undefined;
      await old?.close().catch((err: unknown) => this.options.onError?.(wrap(`close container log ${this.path}`, err)));
      try {
        this.file = await open(this.path, "a", 0o640);
      } catch (err) {
        throw wrap(`reopen container log ${this.path}`, err);
      }
    });
  }

  /** Waits for the records queued so far, then closes the file; later records are dropped. Idempotent. */
  close(): Promise<void> {
    return this.enqueue(async () => {
      if (this.closed) return;
      this.closed = true;
      const file = this.file;
      this.file = undefined;
      await file?.close();
    });
  }

  private write(stream: LogStream, lines: readonly LogLine[]): Promise<void> {
    if (lines.length === 0) return Promise.resolve();
    return this.enqueue(async () => {
      if (this.closed) return;
      const file = this.file;
      if (!file) {
        this.options.onError?.(new VmpodError("FailedPrecondition", `container log ${this.path} is not open (a reopen failed): records dropped`));
        return;
      }
      const ns = (this.options.now ?? wallClockNs)();
      const offset = (this.options.utcOffsetMinutes ?? localUtcOffsetMinutes)(Number(ns / 1_000_000n));
      const data = formatRecords(stream, lines, formatRfc3339Nano(ns, offset));
      try {
        for (let done = 0; done < data.length; ) {
          const { bytesWritten } = await file.write(data, done, data.length - done);
          done += bytesWritten;
        }
      } catch (err) {
        this.options.onError?.(wrap(`write container log ${this.path}`, err));
      }
    });
  }

  private enqueue(step: () => Promise<void>): Promise<void> {
    const run = this.queue.then(step);
    this.queue = run.catch(() => {});
    return run;
  }
}
