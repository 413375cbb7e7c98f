/** Running the host tools the guest build needs (modprobe, ldd, mkfs.erofs, crun). */
import { run as runCommand, type RunResult } from "../../src/common/exec.js";

export type { RunResult };

export interface RunOptions {
  /** The Debian package that ships the tool, named in the error when it is missing. */
  readonly debianPackage: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

/** Directories searched after PATH: a non-root PATH often lacks the sbin directories. */
const EXTRA_PATH = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/**
 * Runs `file` with `args` in the C locale and returns its output. A missing
 * tool is FailedPrecondition naming the Debian package; a failing one is
 * Internal, with the command line and its stderr in the message.
 */
export function run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const env = options.env ?? process.env;
  const path = [env["PATH"] ?? "/usr/bin:/bin", ...EXTRA_PATH].join(":");
  return runCommand(file, args, {
    env: { ...env, PATH: path, LC_ALL: "C" },
    whenMissing: `install the Debian package ${options.debianPackage}`,
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
}
