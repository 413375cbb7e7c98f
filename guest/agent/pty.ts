/**
 * Terminals for container processes.
 *
 * The pty is allocated by crun inside the container (process.terminal true,
 * --console-socket): opened from the container's own /dev/pts instance and
 * made the process's controlling terminal there, so `tty` names a device
 * that exists in the container and job control works. A pty opened by the
 * agent in the guest's devpts was tried first and fails both ways: crun
 * exec starts a new session (no controlling terminal) and the slave's
 * /dev/pts/N does not exist in the container's devpts, so `tty` says "not a
 * tty". crun hands the master over the console socket (SCM_RIGHTS), and
 * from then on the agent owns it: reads it, writes it, resizes it.
 *
 * The master is read with tty.ReadStream (libuv polls it) and written with
 * non-blocking write(2), retried while the terminal's input queue is full:
 * a tty.WriteStream on a master makes libuv spin on EAGAIN.
 */
import { closeSync, writeSync } from "node:fs";
import { rm } from "node:fs/promises";
import tty from "node:tty";
import { VmpodError } from "../../src/common/errors.js";
import { sleep } from "../../src/common/time.js";
import { isErrno } from "./errno.js";
import type { ProcessIo } from "./stdio/io.js";
import { StreamBuffer } from "./stdio/stream-buffer.js";

export interface PtyLibc {
  listenUnix(path: string): number;
  acceptNonblocking(fd: number): number | undefined;
  receiveFd(fd: number): number | undefined;
  setNonblocking(fd: number): void;
  dupCloexec(fd: number): number;
  setWindowSize(fd: number, rows: number, columns: number): void;
}

/** The end of input a terminal understands (VEOF, ^D). */
const EOT = Buffer.from([4]);
const WRITE_RETRY_MIN_MS = 5;
const WRITE_RETRY_MAX_MS = 100;

/** A unix socket on which crun sends the master of the pty it allocates. */
export class ConsoleSocket {
  private constructor(
    private readonly libc: PtyLibc,
    readonly path: string,
    private fd: number | undefined,
  ) {}

  static async listen(libc: PtyLibc, path: string): Promise<ConsoleSocket> {
    await rm(path, { force: true });
    return new ConsoleSocket(libc, path, libc.listenUnix(path));
  }

  /** The master crun has sent; call once crun has exited (crun sends it before it exits). */
  receive(): number {
    if (this.fd === undefined) throw new VmpodError("Internal", "console socket is closed");
    const conn = this.libc.acceptNonblocking(this.fd);
    if (conn === undefined) throw new VmpodError("Internal", "crun did not send the terminal");
    try {
      const master = this.libc.receiveFd(conn);
      if (master === undefined) throw new VmpodError("Internal", "crun's console message carried no terminal");
      return master;
    } finally {
      closeSync(conn);
    }
  }

  async close(): Promise<void> {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
    await rm(this.path, { force: true });
  }
}

export class TerminalIo implements ProcessIo {
  readonly terminal = true;
  readonly stdout: StreamBuffer;
  readonly stderr = StreamBuffer.ended();
  private readonly writeFd: number;
  private writing: Promise<unknown> = Promise.resolve();
  private closed = false;

  /** Takes ownership of `master`. */
  constructor(
    private readonly libc: PtyLibc,
    master: number,
    limit?: number,
  ) {
    libc.setNonblocking(master);
    this.writeFd = libc.dupCloexec(master);
    // The read stream owns `master` and closes it when it ends (EIO once the
    // last holder of the slave has gone, which StreamBuffer takes as the end).
    this.stdout = new StreamBuffer(new tty.ReadStream(master), limit);
  }

  writeStdin(data: Uint8Array): Promise<number> {
    if (this.closed) return Promise.reject(new VmpodError("FailedPrecondition", "the terminal is closed"));
    const result = this.writing.then(() => this.writeAll(Buffer.from(data.buffer, data.byteOffset, data.length)));
    this.writing = result.catch(() => undefined);
    return result;
  }

  async closeStdin(): Promise<void> {
    if (this.closed) return;
    await this.writeStdin(EOT).catch(() => undefined);
  }

  resize(rows: number, columns: number): void {
    if (this.closed) return;
    this.libc.setWindowSize(this.writeFd, rows, columns);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stdout.close();
    closeSync(this.writeFd);
  }

  private async writeAll(data: Buffer): Promise<number> {
    let offset = 0;
    let delay = WRITE_RETRY_MIN_MS;
    while (offset < data.length) {
      if (this.closed) throw new VmpodError("FailedPrecondition", "the terminal is closed");
      try {
        offset += writeSync(this.writeFd, data, offset, data.length - offset);
        delay = WRITE_RETRY_MIN_MS;
      } catch (err) {
        if (!isErrno(err, "EAGAIN")) throw new VmpodError("FailedPrecondition", "the terminal is closed", { cause: err });
        await sleep(delay);
        delay = Math.min(delay * 2, WRITE_RETRY_MAX_MS);
      }
    }
    return data.length;
  }
}
