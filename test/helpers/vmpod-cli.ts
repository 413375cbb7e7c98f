/**
 * `vmpod` as an operator runs it: `src/main.ts` in a process of its own,
 * its output collected.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

const REPO = join(import.meta.dirname, "../..");

export interface VmpodRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunningVmpod {
  readonly child: ChildProcess;
  /** What it printed so far. */
  readonly output: () => { stdout: string; stderr: string };
  readonly exited: Promise<number | null>;
}

/** `vmpod ARGS` started. */
export function startVmpod(args: readonly string[], env: NodeJS.ProcessEnv = process.env): RunningVmpod {
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "src/main.ts"), ...args], { cwd: REPO, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const exited = new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code) => resolve(code));
  });
  return { child, output: () => ({ stdout, stderr }), exited };
}

/** `vmpod ARGS` to its end. */
export async function runVmpod(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<VmpodRun> {
  const running = startVmpod(args, env);
  const code = await running.exited;
  return { code, ...running.output() };
}
