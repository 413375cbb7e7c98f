/**
 * A supervised child process (QEMU, virtiofsd): launched in its own process
 * group with a clean environment and no stdio but its stderr, waited for,
 * and stopped gently then by force. A process meant to outlive vmpod (a pod
 * VM, its virtiofsd) writes its stderr to a file, not to a pipe that would
 * break when vmpod dies; a later vmpod adopts it (adopted-process.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { VmpodError, failedPrecondition, internal } from "../common/errors.js";
import { TailBuffer } from "./tail.js";

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** "exited with code 1", "was killed by SIGKILL"; neither known: the process was not vmpod's child. */
export function describeExit(status: ExitStatus): string {
  if (status.signal !== null) return `was killed by ${status.signal}`;
  return status.code !== null ? `exited with code ${status.code}` : "exited";
}

/** A process vmpod runs or has adopted: what the hypervisor needs of either. */
export interface VmProcess {
  readonly name: string;
  readonly pid: number;
  /** The exit status once the process has exited. */
  readonly exitStatus: ExitStatus | undefined;
  /** Resolves when the process has exited; never rejects. */
  wait(): Promise<ExitStatus>;
  /** The last bytes the process wrote to stderr, trimmed. */
  stderr(): string;
  /** Sends a signal to the process group; nothing once the process has exited. */
  signal(signal: NodeJS.Signals): void;
  /** Asks the process to exit, then kills it; idempotent. */
  stop(timeoutMs: number, graceful?: () => Promise<void>): Promise<ExitStatus>;
}

export interface SpawnOptions {
  /** Names the program in errors ("QEMU", "virtiofsd"). */
  readonly name: string;
  readonly path: string;
  readonly args: readonly string[];
  /** Bytes of stderr kept; 64 KiB unless said otherwise. */
  readonly stderrLimit?: number;
  /** Appends stderr to this file instead of a pipe, so the process can outlive vmpod. */
  readonly stderrPath?: string;
  /** Open descriptors the process gets as its fds 3, 4, ... (a tap for QEMU); the caller still owns and closes them. */
  readonly passFds?: readonly number[];
}

const DEFAULT_STDERR_LIMIT = 64 * 1024;
/** After the process exits, how long its stderr may take to drain. */
const STDERR_DRAIN_MS = 500;

/**
 * What both kinds of process share: the exit status once known, stderr from
 * a pipe's tail or a file, signals to the process group, and stopping.
 */
export abstract class WatchedProcess implements VmProcess {
  private status: ExitStatus | undefined;
  private readonly exited: Promise<ExitStatus>;
  private stopping: Promise<ExitStatus> | undefined;

  protected constructor(
    readonly name: string,
    readonly pid: number,
    exited: Promise<ExitStatus>,
    private readonly stderrSource: TailBuffer | { readonly path: string; readonly limit: number } | undefined,
  ) {
    this.exited = exited.then((status) => (this.status = status));
  }

  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  wait(): Promise<ExitStatus> {
    return this.exited;
  }

  stderr(): string {
    const source = this.stderrSource;
    if (source === undefined) return "";
    if (source instanceof TailBuffer) return source.text().trim();
    return fileTail(source.path, source.limit).trim();
  }

  signal(signal: NodeJS.Signals): void {
    if (this.status) return;
    try {
      process.kill(-this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw internal(`signal ${this.name}`, err);
    }
  }

  /**
   * Asks the process to exit (`graceful`, or SIGTERM when none is given or
   * it fails), waits up to `timeoutMs`, then sends SIGKILL and waits as long
   * again. Idempotent: later calls share the first call's outcome.
   */
  stop(timeoutMs: number, graceful?: () => Promise<void>): Promise<ExitStatus> {
    this.stopping ??= this.stopNow(timeoutMs, graceful);
    return this.stopping;
  }

  private async stopNow(timeoutMs: number, graceful: (() => Promise<void>) | undefined): Promise<ExitStatus> {
    if (this.status) return this.status;
    if (graceful) graceful().catch(() => this.signal("SIGTERM"));
    else this.signal("SIGTERM");
    if (await this.exitsWithin(timeoutMs)) return this.exited;
    this.signal("SIGKILL");
    if (await this.exitsWithin(timeoutMs)) return this.exited;
    throw new VmpodError("DeadlineExceeded", `stop ${this.name}: pid ${this.pid} still runs ${timeoutMs} ms after SIGKILL`);
  }

  private async exitsWithin(ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
    try {
      return await Promise.race([this.exited.then(() => true), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A program vmpod launched itself. */
export class SupervisedProcess extends WatchedProcess {
  readonly path: string;

  /**
   * Launches a program. A missing or non-executable binary is a
   * FailedPrecondition naming its path.
   */
  static async spawn(options: SpawnOptions): Promise<SupervisedProcess> {
    let child: ChildProcess;
    let stderrFd: number | undefined;
    try {
      if (options.stderrPath !== undefined) stderrFd = openSync(options.stderrPath, "a", 0o600);
      child = spawn(options.path, [...options.args], {
        stdio: ["ignore", "ignore", stderrFd ?? "pipe", ...(options.passFds ?? [])],
        // Its own process group: a terminal's signals to vmpod do not reach
        // the VM, and stop() reaches any helper the program forks.
        detached: true,
        env: {},
      });
    } catch (err) {
      if (stderrFd !== undefined) closeSync(stderrFd);
      throw spawnError(options, err);
    }
    // The child has its own copy; vmpod keeps none.
    if (stderrFd !== undefined) closeSync(stderrFd);
    const started = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    // Errors after a successful spawn (a failed kill) must not go unhandled.
    child.on("error", () => {});
    const limit = options.stderrLimit ?? DEFAULT_STDERR_LIMIT;
    const stderr = options.stderrPath === undefined ? new TailBuffer(limit) : { path: options.stderrPath, limit };
    if (stderr instanceof TailBuffer) child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    const exited = exitOf(child);
    try {
      await started;
    } catch (err) {
      throw spawnError(options, err);
    }
    if (child.pid === undefined) throw internal(`start ${options.name}: no pid`);
    return new SupervisedProcess(options, child.pid, exited, stderr);
  }

  private constructor(options: SpawnOptions, pid: number, exited: Promise<ExitStatus>, stderr: TailBuffer | { path: string; limit: number }) {
    super(options.name, pid, exited, stderr);
    this.path = options.path;
  }
}

function exitOf(child: ChildProcess): Promise<ExitStatus> {
  return new Promise((resolve) => {
    let status: ExitStatus | undefined;
    let drained = child.stderr === null;
    const finish = () => {
      if (status && drained) resolve(status);
    };
    child.stderr?.once("close", () => {
      drained = true;
      finish();
    });
    child.once("exit", (code, signal) => {
      status = { code, signal };
      // A forked helper may hold stderr open past the exit.
      setTimeout(() => {
        drained = true;
        finish();
      }, STDERR_DRAIN_MS).unref();
      finish();
    });
  });
}

function spawnError(options: SpawnOptions, err: unknown): VmpodError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return failedPrecondition(`${options.name} binary not found: ${options.path}`);
  if (code === "EACCES") return failedPrecondition(`${options.name} binary is not executable: ${options.path}`);
  return internal(`start ${options.name} (${options.path})`, err);
}

/** The last `limit` bytes of a file, read at once (error paths only); "" when unreadable. */
export function fileTail(path: string, limit: number): string {
  let fd: number | undefined;
  try {
    fd = openSync(path, "r");
    const size = fstatSync(fd).size;
    const length = Math.min(size, limit);
    const buffer = Buffer.alloc(length);
    const read = readSync(fd, buffer, 0, length, size - length);
    const text = buffer.subarray(0, read).toString("utf8");
    return length < size ? `...${text}` : text;
  } catch {
    return "";
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
