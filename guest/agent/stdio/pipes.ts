/**
 * Pipes as a process's stdin, stdout and stderr (real pipes, not the socket
 * pairs child_process makes: a container may open /dev/stdout). The agent's
 * ends are close-on-exec, so no other child inherits them and the process
 * alone decides when its output ends; they are read and written as Node
 * sockets (libuv polls pipes), which gives back-pressure both ways.
 */
import net from "node:net";
import { closeSync } from "node:fs";
import { VmpodError } from "../../../src/common/errors.js";
import type { ProcessIo } from "./io.js";
import { StreamBuffer } from "./stream-buffer.js";

export interface PipeLibc {
  pipe(): [number, number];
}

export class PipeIo implements ProcessIo {
  readonly terminal = false;
  readonly stdout: StreamBuffer;
  readonly stderr: StreamBuffer;
  private readonly stdin: net.Socket;
  private stdinClosed = false;
  private childEnds: number[];

  private constructor(fds: { stdinW: number; stdoutR: number; stderrR: number; child: [number, number, number] }, limit?: number) {
    this.childEnds = fds.child;
    this.stdin = new net.Socket({ fd: fds.stdinW, readable: false, writable: true });
    this.stdin.on("error", () => undefined); // EPIPE once the process is gone; writes report it
    this.stdout = new StreamBuffer(new net.Socket({ fd: fds.stdoutR, readable: true, writable: false }), limit);
    this.stderr = new StreamBuffer(new net.Socket({ fd: fds.stderrR, readable: true, writable: false }), limit);
  }

  static create(libc: PipeLibc, limit?: number): PipeIo {
    const opened: number[] = [];
    try {
      const [stdinR, stdinW] = libc.pipe();
      opened.push(stdinR, stdinW);
      const [stdoutR, stdoutW] = libc.pipe();
      opened.push(stdoutR, stdoutW);
      const [stderrR, stderrW] = libc.pipe();
      opened.push(stderrR, stderrW);
      return new PipeIo({ stdinW, stdoutR, stderrR, child: [stdinR, stdoutW, stderrW] }, limit);
    } catch (err) {
      for (const fd of opened) closeSync(fd);
      throw err;
    }
  }

  /** The ends the process gets as fds 0, 1 and 2. */
  get childStdio(): [number, number, number] {
    const [a, b, c] = this.childEnds;
    if (a === undefined || b === undefined || c === undefined) throw new VmpodError("Internal", "the process's ends of its pipes are already closed");
    return [a, b, c];
  }

  /** Closes the agent's copies of the process's ends, once the process holds them. */
  closeChildEnds(): void {
    for (const fd of this.childEnds) closeSync(fd);
    this.childEnds = [];
  }

  writeStdin(data: Uint8Array): Promise<number> {
    if (this.stdinClosed || this.stdin.destroyed) return Promise.reject(new VmpodError("FailedPrecondition", "stdin is closed"));
    if (data.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      // The callback runs once the pipe has taken the bytes: a full pipe holds the answer back.
      this.stdin.write(data, (err) => {
        if (err) reject(new VmpodError("FailedPrecondition", "stdin is closed", { cause: err }));
        else resolve(data.length);
      });
    });
  }

  async closeStdin(): Promise<void> {
    if (this.stdinClosed) return;
    this.stdinClosed = true;
    // Queued writes go first; then the pipe closes and the process reads end of file.
    this.stdin.end(() => this.stdin.destroy());
  }

  resize(): void {
    throw new VmpodError("FailedPrecondition", "the process has no terminal");
  }

  close(): void {
    this.stdinClosed = true;
    this.stdin.destroy();
    this.stdout.close();
    this.stderr.close();
    if (this.childEnds.length > 0) this.closeChildEnds();
  }
}
