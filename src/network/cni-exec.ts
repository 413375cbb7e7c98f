/**
 * The boundary between the CNI runtime and plugin binaries: finding a plugin
 * in the bin directories and running it once (environment, configuration on
 * stdin, a deadline). Tests put a fake here. What a failed run means is read
 * by cni-errors.ts, the same for real plugins and fakes.
 */
import { spawn } from "node:child_process";
import { access, constants as fsConstants, stat } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";

export interface PluginCall {
  /** The plugin's name (its `type`), for messages. */
  readonly type: string;
  readonly path: string;
  /** CNI_COMMAND, CNI_CONTAINERID, ... */
  readonly env: Readonly<Record<string, string>>;
  readonly stdin: string;
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
}

export interface PluginOutput {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface PluginExec {
  /** The path of plugin `type` in the first of `dirs` that has it as an executable file. */
  find(type: string, dirs: readonly string[]): Promise<string | undefined>;
  /** Runs a plugin to its exit. Rejects only when it could not run, ran past its deadline or was canceled. */
  exec(call: PluginCall): Promise<PluginOutput>;
}

/**
 * The PATH plugins run with (portmap and bridge run iptables); the daemon's
 * own environment is not handed to plugins.
 */
const PLUGIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export const processPluginExec: PluginExec = {
  async find(type, dirs) {
    for (const dir of dirs) {
      const path = join(dir, type);
      try {
        if (!(await stat(path)).isFile()) continue;
        await access(path, fsConstants.X_OK);
        return path;
      } catch {
        // not in this directory
      }
    }
    return undefined;
  },

  exec(call) {
    return new Promise((resolve, reject) => {
      if (call.signal?.aborted) {
        reject(new VmpodError("Canceled", `CNI plugin ${call.type} ${call.env.CNI_COMMAND ?? ""}: canceled`));
        return;
      }
      const child = spawn(call.path, [], { stdio: ["pipe", "pipe", "pipe"], env: { PATH: PLUGIN_PATH, ...call.env } });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let stopped: VmpodError | undefined;
      const stop = (why: VmpodError) => {
        if (stopped) return;
        stopped = why;
        child.kill("SIGKILL");
      };
      const what = `CNI plugin ${call.type} ${call.env.CNI_COMMAND ?? ""}`;
      const timer = setTimeout(() => stop(new VmpodError("DeadlineExceeded", `${what}: no answer within ${call.timeoutMs / 1000} s`)), call.timeoutMs);
      const onAbort = () => stop(new VmpodError("Canceled", `${what}: canceled`));
      call.signal?.addEventListener("abort", onAbort, { once: true });
      const done = () => {
        clearTimeout(timer);
        call.signal?.removeEventListener("abort", onAbort);
      };
      child.stdout.on("data", (b: Buffer) => out.push(b));
      child.stderr.on("data", (b: Buffer) => err.push(b));
      child.on("error", (e) => {
        done();
        reject(new VmpodError("FailedPrecondition", `${what}: cannot run ${call.path}`, { cause: e }));
      });
      child.on("close", (code, signal) => {
        done();
        if (stopped) reject(stopped);
        else if (code === null) reject(new VmpodError("Internal", `${what}: killed by ${signal ?? "a signal"}`));
        else resolve({ exitCode: code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
      });
      child.stdin.on("error", () => {}); // a plugin that exits without reading its configuration
      child.stdin.end(call.stdin);
    });
  },
};
