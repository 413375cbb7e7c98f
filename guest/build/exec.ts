/** Running the host tools the guest build needs (modprobe, ldd, mkfs.erofs, crun). */
import { execFile } from "node:child_process";
import { failedPrecondition, internal } from "../../src/common/errors.js";

export interface RunOptions {
  /** The Debian package that ships the tool, named in the error when it is missing. */
  readonly debianPackage: string;
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Directories searched after PATH: a non-root PATH often lacks the sbin directories. */
const EXTRA_PATH = ["/usr/local/sbin", "/usr/sbin", "/sbin"];

/**
 * Runs `file` with `args` and returns its output. A missing tool is
 * FailedPrecondition naming the Debian package; a failing one is Internal,
 * with the command line and its stderr in the message.
 */
export function run(file: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  const env = options.env ?? process.env;
  const path = [env["PATH"] ?? "/usr/bin:/bin", ...EXTRA_PATH].join(":");
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { cwd: options.cwd, env: { ...env, PATH: path, LC_ALL: "C" }, maxBuffer: 64 * 1024 * 1024, encoding: "utf8" },
      (err, stdout, stderr) => {
        if (err === null) {
          resolve({ stdout, stderr });
          return;
        }
        if ((err as NodeJS.ErrnoException).code === "ENOENT") {
          reject(failedPrecondition(`${file} not found: install the Debian package ${options.debianPackage}`, err));
          return;
        }
        // execFile's message names the command and carries its stderr.
        reject(internal(`run ${file}`, err));
      },
    );
  });
}
