/**
 * Terminal resizes from the client: JSON objects `{"Width":W,"Height":H}`,
 * either one per WebSocket message or back to back on a SPDY stream, turned
 * into the runtime's `TerminalSize` events. Only the newest few are kept
 * while nobody reads them: a terminal cares about its latest size.
 */
import type { Readable } from "node:stream";
import type { TerminalSize } from "../../sandbox/runtime.js";

const KEEP = 16;
/** A resize message larger than this is not a resize message. */
const MAX_OBJECT = 4096;

export class ResizeQueue implements AsyncIterable<TerminalSize> {
  private readonly queued: TerminalSize[] = [];
  private waiter: ((r: IteratorResult<TerminalSize>) => void) | undefined;
  private ended = false;

  /** Parses one JSON resize message; malformed ones are ignored, as Kubernetes does. */
  pushJson(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return;
    }
    if (typeof value !== "object" || value === null) return;
    const { Width: width, Height: height } = value as { Width?: unknown; Height?: unknown };
    if (!isDimension(width) || !isDimension(height)) return;
    this.push({ width, height });
  }

  push(size: TerminalSize): void {
    if (this.ended) return;
    if (this.waiter) {
      const wake = this.waiter;
      this.waiter = undefined;
      wake({ value: size, done: false });
      return;
    }
    this.queued.push(size);
    if (this.queued.length > KEEP) this.queued.shift();
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    const wake = this.waiter;
    this.waiter = undefined;
    wake?.({ value: undefined, done: true });
  }

  /** Feeds the queue from a stream of concatenated JSON objects; ends it with the stream. */
  feedFrom(stream: Readable): void {
    const splitter = new JsonObjectSplitter((text) => this.pushJson(text));
    stream.on("data", (chunk: Buffer) => {
      if (!splitter.push(chunk.toString("utf8"))) stream.destroy();
    });
    stream.once("end", () => this.end());
    stream.once("close", () => this.end());
  }

  [Symbol.asyncIterator](): AsyncIterator<TerminalSize> {
    return {
      next: () => {
        const size = this.queued.shift();
        if (size) return Promise.resolve({ value: size, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => (this.waiter = resolve));
      },
      return: () => {
        this.end();
        this.queued.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

function isDimension(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff;
}

/** Cuts concatenated JSON objects apart by brace depth, minding strings and escapes. */
export class JsonObjectSplitter {
  private current = "";
  private depth = 0;
  private inString = false;
  private escaped = false;

  constructor(private readonly onObject: (text: string) => void) {}

  /** Returns false if the input is not a stream of objects (or one is too large). */
  push(text: string): boolean {
    for (const ch of text) {
      if (this.depth === 0) {
        if (ch === "{") {
          this.depth = 1;
          this.current = ch;
        } else if (!/\s/.test(ch)) return false;
        continue;
      }
      this.current += ch;
      if (this.current.length > MAX_OBJECT) return false;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (ch === "\\") this.escaped = true;
        else if (ch === '"') this.inString = false;
      } else if (ch === '"') this.inString = true;
      else if (ch === "{") this.depth++;
      else if (ch === "}" && --this.depth === 0) {
        const done = this.current;
        this.current = "";
        this.onObject(done);
      }
    }
    return true;
  }
}
