/**
 * Bounded views of a process's output: the last bytes of a stream kept in
 * memory, and the last bytes of a file on disk (the serial console log).
 */
import { open } from "node:fs/promises";

/** Keeps the last `limit` bytes written to it. */
export class TailBuffer {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = false;

  constructor(private readonly limit: number) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > this.limit) {
      const first = this.chunks[0];
      if (first === undefined) break;
      const excess = this.size - this.limit;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
      }
      this.dropped = true;
    }
  }

  /** The kept text, marked with "..." in front when older output was dropped. */
  text(): string {
    const body = Buffer.concat(this.chunks).toString("utf8");
    return this.dropped ? `...${body}` : body;
  }
}

/** The last `maxBytes` of a file as text, "" when it does not exist or cannot be read. */
export async function readTail(path: string, maxBytes: number): Promise<string> {
  let fh;
  try {
    fh = await open(path, "r");
  } catch {
    return "";
  }
  try {
    const { size } = await fh.stat();
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await fh.read(buffer, 0, length, size - length);
    const text = buffer.subarray(0, bytesRead).toString("utf8");
    return length < size ? `...${text}` : text;
  } catch {
    return "";
  } finally {
    await fh.close();
  }
}
