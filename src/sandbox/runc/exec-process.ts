/**
 * A process exec'd into a host container: `runtime exec --process FILE` in
 * the foreground, a child of the daemon, whose exit status is the process's
 * (the code, or 128 + signal). Signals sent to the runtime are forwarded by
 * it to the process.
 *
 * Without a terminal its stdio are pipes. With one, the daemon opens a
 * pseudoterminal pair and gives the slave to the runtime as its stdio: the
 * runtime puts it in raw mode, allocates the container's own terminal and
 * copies between the two. A resize sets the pair's window size and sends
 * SIGWINCH to the runtime, which copies the new size to the container's
 * terminal. The process's consoleSize (the client's first size) is set on
 * the pair before the runtime starts: the runtime gives it to the
 * container's terminal before the process runs, then copies the pair's
 * size over it, which must then be the same. (Receiving the container's terminal over a console socket
 * would need `exec --detach`, and a detached process's exit status is lost
 * to a daemon that is not a subreaper.)
 *
 * Execs are not kept across a daemon restart: they die with their client.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, writeSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { constants } from "node:os";
import { PassThrough, Writable, type Readable } from "node:stream";
import tty from "node:tty";
import { VmpodError } from "../../common/errors.js";
import type { OciProcess } from "../../common/oci-spec.js";
import { sleep } from "../../common/time.js";
import type { ProcessIo } from "../process-io.js";
import { dupCloexec, openPty, setWindowSize } from "./libc.js";

export interface ExecRequest {
  readonly runtime: string;
  readonly runtimeRoot: string;
  readonly containerId: string;
  readonly execId: string;
  /** Where the process file is written while it runs. */
  readonly execDir: string;
  readonly process: OciProcess;
  readonly stdin: boolean;
}

/** A running exec: its streams, its exit status, and its signals. */
export interface ExecProcess {
  readonly io: ProcessIo;
  readonly exited: Promise<number>;
  signal(signal: number): void;
}

const WRITE_RETRY_MIN_MS = 5;
const WRITE_RETRY_MAX_MS = 100;

export async function startExec(req: ExecRequest): Promise<ExecProcess> {
  await mkdir(req.execDir, { recursive: true, mode: 0o700 });
  const processFile = join(req.execDir, `${req.execId}.json`);
  const terminal = req.process.terminal === true;
  await writeFile(processFile, JSON.stringify({ ...req.process, terminal }), { mode: 0o600 });
  const args = ["--root", req.runtimeRoot, "exec", "--process", processFile, ...(terminal ? ["--tty"] : []), req.containerId];
  try {
    return terminal ? await startTerminal(req.runtime, args, processFile, req.process.consoleSize) : await startPiped(req.runtime, args, processFile, req.stdin);
  } catch (err) {
    await rm(processFile, { force: true });
    throw err;
  }
}

function exitOf(child: ChildProcess, processFile: string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    child.on("error", (err) => reject(new VmpodError("FailedPrecondition", "start the OCI runtime's exec", { cause: err })));
    child.on("close", (code, signal) => {
      void rm(processFile, { force: true }).catch(() => undefined);
      resolve(code ?? 128 + (signal ? signalNumber(signal) : 0));
    });
  });
}

async function spawned(child: ChildProcess): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (err) => reject(new VmpodError("FailedPrecondition", "start the OCI runtime's exec", { cause: err })));
  });
}

async function startPiped(runtime: string, args: string[], processFile: string, stdin: boolean): Promise<ExecProcess> {
  const child = spawn(runtime, args, { stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"] });
  const exited = exitOf(child, processFile);
  exited.catch(() => undefined);
  await spawned(child);
  const stdout = child.stdout;
  const stderr = child.stderr;
  if (!stdout || !stderr) throw new VmpodError("Internal", "exec without output pipes");
  child.stdin?.on("error", () => undefined);
  return {
    io: {
      stdout,
      stderr,
      ...(child.stdin ? { stdin: child.stdin } : {}),
      wait: (o) => abortable(exited, o?.signal),
      resize: () => Promise.reject(new VmpodError("FailedPrecondition", "the process has no terminal")),
    },
    exited,
    signal: (sig) => void child.kill(sig),
  };
}

async function startTerminal(runtime: string, args: string[], processFile: string, size: OciProcess["consoleSize"]): Promise<ExecProcess> {
  const { master, slave } = openPty();
  let child: ChildProcess;
  try {
    if (size) setWindowSize(master, size.height, size.width);
    child = spawn(runtime, args, { stdio: [slave, slave, slave], detached: true });
  } catch (err) {
    closeSync(master);
    throw err;
  } finally {
    closeSync(slave);
  }
  const exited = exitOf(child, processFile);
  exited.catch(() => undefined);
  try {
    await spawned(child);
  } catch (err) {
    closeSync(master);
    throw err;
  }
  const writeFd = master;
  // The read stream owns a duplicate: it closes it when it ends (EIO once the slave's last holder is gone).
  const stdout = terminalOutput(dupCloexec(master));
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    closeSync(writeFd);
  };
  void exited.finally(() => setTimeout(close, 1000));
  const stdin = new Writable({
    write(chunk: Buffer, _enc, callback) {
      writeAll(writeFd, chunk, () => closed).then(() => callback(), (err: unknown) => callback(err as Error));
    },
    final(callback) {
      // End of input for a terminal: VEOF (^D).
      writeAll(writeFd, Buffer.from([4]), () => closed).then(() => callback(), () => callback());
    },
  });
  return {
    io: {
      stdout,
      stdin,
      wait: (o) => abortable(exited, o?.signal),
      resize: async (rows, columns) => {
        if (closed) return;
        setWindowSize(writeFd, rows, columns);
        if (child.pid !== undefined) child.kill("SIGWINCH");
      },
    },
    exited,
    signal: (sig) => void child.kill(sig),
  };
}

/** The master's output; EIO (the slave's last holder is gone) is its end. */
function terminalOutput(fd: number): Readable {
  const source = new tty.ReadStream(fd);
  const out = new PassThrough();
  source.on("data", (chunk: Buffer) => out.write(chunk));
  source.on("end", () => out.end());
  source.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EIO") out.end();
    else out.destroy(err);
    source.destroy();
  });
  out.on("close", () => source.destroy());
  return out;
}

async function writeAll(fd: number, data: Buffer, isClosed: () => boolean): Promise<void> {
  let offset = 0;
  let delay = WRITE_RETRY_MIN_MS;
  while (offset < data.length) {
    if (isClosed()) throw new VmpodError("FailedPrecondition", "the terminal is closed");
    try {
      offset += writeSync(fd, data, offset, data.length - offset);
      delay = WRITE_RETRY_MIN_MS;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw new VmpodError("FailedPrecondition", "the terminal is closed", { cause: err });
      await sleep(delay);
      delay = Math.min(delay * 2, WRITE_RETRY_MAX_MS);
    }
  }
}

function abortable(p: Promise<number>, signal: AbortSignal | undefined): Promise<number> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise<number>((resolve, reject) => {
    const onAbort = () => reject(new VmpodError("Canceled", "wait canceled", { cause: signal.reason }));
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function signalNumber(name: NodeJS.Signals): number {
  return constants.signals[name] ?? 0;
}
