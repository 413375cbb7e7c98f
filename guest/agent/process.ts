/**
 * One process of a container (its first process or an exec'd one): its pid,
 * its standard streams and its exit status.
 */
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { sleep } from "../../src/common/time.js";
import { exitStatusOf } from "./reaper.js";
import type { ProcessIo } from "./stdio/io.js";

/**
 * How long a wait lets the output of an exited process settle. Output the
 * process wrote is in its pipe when it exits and is taken at once; only a
 * descendant still holding the pipe open (a daemon started by an exec) keeps
 * the end of stream from coming, and the wait does not hang on it.
 */
const DRAIN_GRACE_MS = 5000;

export const MAX_SIGNAL = 64;

export class ContainerProcess {
  private status: number | undefined;
  private readonly exited: Promise<number>;
  private drained: Promise<number> | undefined;

  constructor(
    readonly execId: string,
    readonly pid: number,
    readonly io: ProcessIo,
    /** Resolves with the raw wait status. */
    waitStatus: Promise<number>,
    log: Logger,
  ) {
    this.exited = waitStatus.then((raw) => {
      const status = exitStatusOf(raw);
      this.status = status;
      log.info("process exited", { execId, pid, status });
      // Nobody can write to a dead process: close its input now.
      if (!io.terminal) io.closeStdin().catch(() => undefined);
      return status;
    });
  }

  /** The exit status, once the process has exited. */
  get exitStatus(): number | undefined {
    return this.status;
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** Resolves when the process has exited. */
  whenExited(): Promise<number> {
    return this.exited;
  }

  /**
   * Resolves with the exit status once the process has exited and its output
   * has all been taken from its pipes (or waits on the host, the buffer
   * being full), or after a grace period if something else holds them open.
   */
  wait(signal?: AbortSignal): Promise<number> {
    this.drained ??= this.exited.then(async (status) => {
      const settled = Promise.all([this.io.stdout.settled(), this.io.stderr.settled()]);
      const grace = new AbortController();
      await Promise.race([settled, sleep(DRAIN_GRACE_MS, grace.signal).catch(() => undefined)]);
      grace.abort();
      return status;
    });
    if (!signal) return this.drained;
    return abortable(this.drained, signal);
  }

  /** Sends `sig`; nothing happens if the process has already exited. */
  kill(sig: number): void {
    if (!Number.isInteger(sig) || sig < 1 || sig > MAX_SIGNAL) throw new VmpodError("InvalidArgument", `bad signal ${sig}`);
    if (!this.running) return;
    try {
      // Safe from pid reuse: the agent is the parent and has not reaped it.
      process.kill(this.pid, sig);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw new VmpodError("Internal", `kill ${this.pid}`, { cause: err });
    }
  }

  /** True once the process has exited and the host has read all of its output. */
  get finished(): boolean {
    const { stdout, stderr } = this.io;
    return !this.running && stdout.ended && stdout.length === 0 && stderr.ended && stderr.length === 0;
  }
}

function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new VmpodError("Canceled", "wait canceled"));
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new VmpodError("Canceled", "wait canceled"));
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}
