/**
 * Running helper programs (crun, mount) as children of the agent. Every pid
 * handed out by child_process is recorded until Node has reaped it, so the
 * orphan reaper never takes an exit status that libuv is waiting for.
 */
import { spawn, type StdioOptions } from "node:child_process";
import { constants } from "node:os";
import { VmpodError } from "../../src/common/errors.js";

export interface RunResult {
  /** Exit code, or 128 + signal number. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Descriptors for the child's stdin, stdout and stderr; the output is captured when omitted. */
  readonly stdio?: readonly [number | "ignore", number | "ignore", number | "ignore"];
  /** Bytes written to stdin (only when stdio is not given). */
  readonly input?: string;
}

const OUTPUT_LIMIT = 64 * 1024;

export class CommandRunner {
  private readonly running = new Set<number>();

  /** True while `pid` is a child that child_process owns (and will reap itself). */
  owns(pid: number): boolean {
    return this.running.has(pid);
  }

  /** Runs `cmd` to completion. Never rejects for a non-zero exit: callers read `code`. */
  run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const stdio: StdioOptions = options.stdio ? [...options.stdio] : ["pipe", "pipe", "pipe"];
      let child;
      try {
        child = spawn(cmd, args, { stdio });
      } catch (err) {
        reject(new VmpodError("Internal", `run ${cmd}`, { cause: err }));
        return;
      }
      const pid = child.pid;
      if (pid !== undefined) this.running.add(pid);
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      const collect = (into: Buffer[]) => (chunk: Buffer) => {
        if (into.reduce((n, b) => n + b.length, 0) < OUTPUT_LIMIT) into.push(chunk);
      };
      child.stdout?.on("data", collect(out));
      child.stderr?.on("data", collect(err));
      child.stdin?.on("error", () => undefined);
      child.stdin?.end(options.input ?? "");
      child.on("error", (e) => {
        if (pid !== undefined) this.running.delete(pid);
        const code = (e as NodeJS.ErrnoException).code;
        reject(new VmpodError(code === "ENOENT" ? "FailedPrecondition" : "Internal", `run ${cmd}`, { cause: e }));
      });
      child.on("close", (code, signal) => {
        if (pid !== undefined) this.running.delete(pid);
        resolve({
          code: code ?? 128 + signalNumber(signal),
          stdout: Buffer.concat(out).toString(),
          stderr: Buffer.concat(err).toString().trim(),
        });
      });
    });
  }
}

function signalNumber(signal: NodeJS.Signals | null): number {
  return signal === null ? 0 : (constants.signals[signal] ?? 0);
}
