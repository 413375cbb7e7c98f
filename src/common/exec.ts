/** Running a host command to completion, with its stderr in the error. */
import { spawn } from "node:child_process";
import { VmpodError } from "./errors.js";

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  readonly signal?: AbortSignal;
  readonly input?: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** What to tell the user when the command does not exist ("install the Debian package X"). */
  readonly whenMissing?: string;
}

/**
 * Runs `cmd` to completion. A missing command is FailedPrecondition; one that
 * fails is Internal, with its command line and stderr in the message.
 */
export function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: [options.input === undefined ? "ignore" : "pipe", "pipe", "pipe"],
      ...(options.signal ? { signal: options.signal } : {}),
      ...(options.cwd ? { cwd: options.cwd } : {}),
      ...(options.env ? { env: options.env } : {}),
    });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on("data", (b: Buffer) => out.push(b));
    child.stderr?.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        reject(new VmpodError("FailedPrecondition", `${cmd} not found${options.whenMissing ? `: ${options.whenMissing}` : ""}`, { cause: e }));
      } else {
        reject(new VmpodError("Internal", `run ${cmd}`, { cause: e }));
      }
    });
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString().trim();
      if (code === 0) resolve({ stdout, stderr });
      else reject(new VmpodError("Internal", `${cmd} ${args.join(" ")} failed (${signal ?? `exit ${code}`})${stderr ? `: ${stderr}` : ""}`));
    });
    if (child.stdin) {
      child.stdin.on("error", () => {}); // a command that exits without reading its input
      child.stdin.end(options.input);
    }
  });
}
