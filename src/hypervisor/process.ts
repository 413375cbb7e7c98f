/**
 * A supervised child process (QEMU, virtiofsd): launched in its own process
 * group with a clean environment and no stdio but a captured stderr tail,
 * waited for, and stopped gently then by force.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { VmpodError, failedPrecondition, internal } from "../common/errors.js";
import { TailBuffer } from "./tail.js";

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** "exited with code 1", "was killed by SIGKILL". */
export function describeExit(status: ExitStatus): string {
  return status.signal !== null ? `was killed by ${status.signal}` : `exited with code ${status.code}`;
}

export interface SpawnOptions {
  /** Names the program in errors ("QEMU", "virtiofsd"). */
  readonly name: string;
  readonly path: string;
  readonly args: readonly string[];
  /** Bytes of stderr kept; 64 KiB unless said otherwise. */
  readonly stderrLimit?: number;
}

const DEFAULT_STDERR_LIMIT = 64 * 1024;
/** After the process exits, how long its stderr may take to drain. */
const STDERR_DRAIN_MS = 500;

export class SupervisedProcess {
  readonly name: string;
  readonly path: string;
  readonly pid: number;
  private status: ExitStatus | undefined;
  private readonly exited: Promise<ExitStatus>;
  private readonly stderrTail: TailBuffer;
  private stopping: Promise<ExitStatus> | undefined;

  /**
   * Launches a program. A missing or non-executable binary is a
   * FailedPrecondition naming its path.
   */
  static async spawn(options: SpawnOptions): Promise<SupervisedProcess> {
    let child: ChildProcess;
    try {
      child = spawn(options.path, [...options.args], {
        stdio: ["ignore", "ignore", "pipe"],
        // Its own process group: a terminal's signals to vmpod do not reach
        // the VM, and stop() reaches any helper the program forks.
        detached: true,
        env: {},
      });
    } catch (err) {
      throw spawnError(options, err);
    }
    const started = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    // Errors after a successful spawn (a failed kill) must not go unhandled.
    child.on("error", () => {});
    const stderr = new TailBuffer(options.stderrLimit ?? DEFAULT_STDERR_LIMIT);
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    const exited = exitOf(child);
    try {
      await started;
    } catch (err) {
      throw spawnError(options, err);
    }
    if (child.pid === undefined) throw internal(`start ${options.name}: no pid`);
    return new SupervisedProcess(options, child.pid, exited, stderr);
  }

  private constructor(options: SpawnOptions, pid: number, exited: Promise<ExitStatus>, stderr: TailBuffer) {
    this.name = options.name;
    this.path = options.path;
    this.pid = pid;
    this.stderrTail = stderr;
    this.exited = exited.then((status) => (this.status = status));
  }

  /** The exit status once the process has exited. */
  get exitStatus(): ExitStatus | undefined {
    return this.status;
  }

  /** Resolves when the process has exited and its stderr has drained; never rejects. */
  wait(): Promise<ExitStatus> {
    return this.exited;
  }

  /** The last bytes the process wrote to stderr, trimmed. */
  stderr(): string {
    return this.stderrTail.text().trim();
  }

  /** Sends a signal to the process group; nothing once the process has exited. */
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
