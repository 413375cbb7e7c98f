/**
 * A container's stdout or stderr as a Readable, from the file its
 * supervisor appends to: read from where vmpod last stopped (the offset
 * file beside it), followed as it grows (inotify through fs.watch, with a
 * poll as a safety net), ended once the container has exited and the file
 * is read to its end. What has been read is freed on disk by punching a
 * hole at the head of the file (its size keeps growing, its blocks do
 * not), so a long-running chatty container does not fill the state disk,
 * and nothing is lost or blocked while vmpod is down: the supervisor keeps
 * appending and the next daemon carries on from the saved offset.
 *
 * The offset is saved at most every OFFSET_SAVE_MS (replacing the file, so
 * a daemon killed while saving leaves the old offset, never an empty file),
 * so a daemon killed hard may hand the last fraction of a second of output
 * twice, never skip it. Only what lies below the saved offset is ever
 * punched out: the next daemon starts reading there, and a hole past it
 * would hand it zeros (NUL bytes) instead of the output it repeats.
 */
import { watch, type FSWatcher } from "node:fs";
import { open, readFile, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import { writeFileAtomic } from "../../common/fs.js";
import { punchHole } from "./libc.js";
import { offsetPath } from "./layout.js";

const CHUNK = 64 * 1024;
const POLL_MS = 250;
const OFFSET_SAVE_MS = 500;
/** Read bytes are freed in steps of this much, block-aligned. */
const PUNCH_STEP = 1 << 20;
const BLOCK = 4096;

export interface OutputTailOptions {
  readonly path: string;
  /** True once the writer is done for good (the container's exit file exists). */
  readonly finished: () => Promise<boolean>;
  /** Free what was read (default true). */
  readonly punch?: boolean;
}

export class OutputTail extends Readable {
  private fh: FileHandle | undefined;
  private offset = 0;
  private punched = 0;
  private savedOffset = 0;
  private saveTimer: NodeJS.Timeout | undefined;
  private watcher: FSWatcher | undefined;
  private wake: (() => void) | undefined;
  private reading = false;
  private readAgain = false;
  private stopped = false;

  constructor(private readonly options: OutputTailOptions) {
    super({ highWaterMark: CHUNK });
  }

  override _construct(callback: (err?: Error | null) => void): void {
    void (async () => {
      // Read and write: hole punching needs a writable descriptor; nothing is written through it.
      this.fh = await open(this.options.path, "r+");
      this.offset = await readOffset(offsetPath(this.options.path));
      this.savedOffset = this.offset;
      this.punched = Math.floor(this.offset / BLOCK) * BLOCK;
      try {
        this.watcher = watch(this.options.path, { persistent: false }, () => this.wake?.());
        this.watcher.on("error", () => undefined);
      } catch {
        // polling alone
      }
    })().then(() => callback(), (err: unknown) => callback(err as Error));
  }

  override _read(): void {
    // A read asked for while a pump is finishing must not be lost: Node asks once.
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = true;
    void this.pump()
      .catch((err: unknown) => this.destroy(err as Error))
      .finally(() => {
        this.reading = false;
        if (this.readAgain) {
          this.readAgain = false;
          this._read();
        }
      });
  }

  private async pump(): Promise<void> {
    const fh = this.fh;
    if (!fh) return;
    for (;;) {
      if (this.stopped) return;
      // Decide "finished" before reading: output written before the exit
      // file appeared is then read in full before the end.
      const finished = await this.options.finished();
      const buf = Buffer.allocUnsafe(CHUNK);
      const { bytesRead } = await fh.read(buf, 0, CHUNK, this.offset);
      if (this.stopped) return;
      if (bytesRead > 0) {
        this.offset += bytesRead;
        this.consumed();
        if (!this.push(buf.subarray(0, bytesRead))) return;
        continue;
      }
      if (finished) {
        await this.saveOffset();
        this.push(null);
        return;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, POLL_MS);
        this.wake = done;
      });
    }
  }

  private consumed(): void {
    this.saveTimer ??= setTimeout(() => {
      this.saveTimer = undefined;
      void this.saveOffset();
    }, OFFSET_SAVE_MS);
  }

  private async saveOffset(): Promise<void> {
    if (this.offset === this.savedOffset) return;
    const offset = this.offset;
    const saved = await writeFileAtomic(offsetPath(this.options.path), String(offset)).then(
      () => true,
      () => false,
    );
    if (!saved) return;
    this.savedOffset = Math.max(this.savedOffset, offset);
    this.punch();
  }

  /** Frees, in steps, what lies below the saved offset: nothing a reader will ever read again. */
  private punch(): void {
    if (this.options.punch === false || !this.fh) return;
    const upTo = Math.floor(this.savedOffset / BLOCK) * BLOCK;
    if (upTo - this.punched < PUNCH_STEP) return;
    try {
      punchHole(this.fh.fd, upTo);
    } catch {
      // a filesystem without hole punching keeps the bytes
    }
    this.punched = upTo;
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.stopped = true;
    this.wake?.();
    this.watcher?.close();
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    const fh = this.fh;
    this.fh = undefined;
    void this.saveOffset()
      .then(() => fh?.close())
      .then(() => callback(err), (e: unknown) => callback(err ?? (e as Error)));
  }
}

async function readOffset(path: string): Promise<number> {
  try {
    const n = Number((await readFile(path, "utf8")).trim());
    return Number.isSafeInteger(n) && n >= 0 ? n : 0;
  } catch {
    return 0;
  }
}
