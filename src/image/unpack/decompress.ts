/**
 * Layer decompression. gzip is node:zlib's; zstd (which Node 20 lacks) is
 * Debian's `zstd -dc` as a child process behind a Duplex stream: its exit
 * status decides whether the output was whole, and destroying the stream
 * kills it and waits until it is reaped.
 */
import { spawn, type ChildProcessByStdio } from "node:child_process";
import { Duplex } from "node:stream";
import type { Readable, Writable } from "node:stream";
import { createGunzip, type Gunzip } from "node:zlib";
import { VmpodError } from "../../common/errors.js";

const STDERR_KEPT = 4096;

/** zstd -dc as a stream: compressed bytes in, tar bytes out. */
export class ZstdDecompressor extends Duplex {
  private readonly child: ChildProcessByStdio<Writable, Readable, Readable>;
  private stderr = "";
  /** Settles once the child has exited and been reaped (or never started). */
  readonly exited: Promise<void>;

  constructor(command = "zstd") {
    super();
    this.child = spawn(command, ["-dc", "-q"], { stdio: ["pipe", "pipe", "pipe"] });
    const child = this.child;
    this.exited = new Promise((resolve) => {
      child.once("close", () => resolve());
      child.once("error", () => {
        if (child.pid === undefined) resolve(); // never started: there is nothing to reap
      });
    });
    child.on("error", (err: NodeJS.ErrnoException) => {
      this.destroy(
        err.code === "ENOENT"
          ? new VmpodError("FailedPrecondition", `${command} not found: install the Debian package zstd`, { cause: err })
          : new VmpodError("Internal", `run ${command}`, { cause: err }),
      );
    });
    child.stdout.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) child.stdout.pause();
    });
    child.stderr.on("data", (chunk: Buffer) => {
      if (this.stderr.length < STDERR_KEPT) this.stderr += chunk.toString();
    });
    // A zstd that stops reading (bad input) breaks the pipe; its exit status says why.
    child.stdin.on("error", () => {});
    child.once("close", (code, signal) => {
      if (this.destroyed) return;
      if (code === 0) {
        this.push(null);
        return;
      }
      const why = signal ?? `exit ${code}`;
      this.destroy(new VmpodError("InvalidArgument", `zstd stream is corrupt: ${command} -dc failed (${why})${this.stderr ? `: ${this.stderr.trim()}` : ""}`));
    });
  }

  /** The child's process id (undefined if it could not be started). */
  get pid(): number | undefined {
    return this.child.pid;
  }

  override _read(): void {
    this.child.stdout.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    // Called back once the pipe took it: zstd's pace is the source's pace. A
    // write error means zstd is gone, and its exit status will end this stream.
    this.child.stdin.write(chunk, () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.child.stdin.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    const child = this.child;
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill("SIGKILL");
    child.stdin.destroy();
    child.stdout.destroy();
    child.stderr.destroy();
    this.exited.then(() => callback(error));
  }
}

const GUNZIP_CHUNK = 256 * 1024;

/** gzip decompression; its errors (bad data, truncation) are recognised by identity through `isOwnError`. */
export function gunzip(): { readonly stream: Gunzip; isOwnError(err: unknown): boolean } {
  // Large output chunks: fewer callbacks, and fewer, larger writes of file bodies downstream.
  const stream = createGunzip({ chunkSize: GUNZIP_CHUNK });
  const errors = new Set<unknown>();
  stream.on("error", (err) => errors.add(err));
  return { stream, isOwnError: (err) => errors.has(err) };
}
