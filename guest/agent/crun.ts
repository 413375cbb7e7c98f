/**
 * crun, the OCI runtime in the guest, driven through its command line with
 * its state under the agent's state directory (`--root`).
 *
 * `create` and `exec -d` are short-lived: the container's process is forked
 * by crun, crun exits, and the process is re-parented to the agent (a child
 * subreaper), which collects its exit status itself. Their stdio is the
 * process's, so crun's own error messages are taken from its log file.
 * crun tells failures apart only in prose, so they are all Internal: the
 * agent checks beforehand what the caller can get wrong (ids, paths).
 */
import { readFile, rm } from "node:fs/promises";
import { VmpodError } from "../../src/common/errors.js";
import type { CommandRunner, RunResult } from "./run.js";

export type Stdio = readonly [number | "ignore", number | "ignore", number | "ignore"];

export interface LaunchArgs {
  readonly id: string;
  readonly pidFile: string;
  readonly logFile: string;
  readonly stdio: Stdio;
  readonly consoleSocket?: string;
}

export class Crun {
  constructor(
    private readonly runner: CommandRunner,
    private readonly binary: string,
    /** crun's state directory (--root). */
    readonly root: string,
  ) {}

  /** `crun create`: the container exists, its first process waits for `start`. */
  async create(bundle: string, args: LaunchArgs): Promise<void> {
    await this.launch("create", ["create", "--bundle", bundle, "--pid-file", args.pidFile, ...consoleArgs(args), args.id], args);
  }

  /** `crun exec --detach`: runs the process described by `processFile` in the container. */
  async exec(processFile: string, args: LaunchArgs): Promise<void> {
    await this.launch("exec", ["exec", "--detach", "--pid-file", args.pidFile, "--process", processFile, ...consoleArgs(args), args.id], args);
  }

  async start(id: string): Promise<void> {
    await this.checked("start", ["start", id]);
  }

  /** Signals the container's processes (`all`: every process of it, not just the first). */
  async kill(id: string, signal: number, all = false): Promise<void> {
    await this.checked("kill", ["kill", ...(all ? ["--all"] : []), id, String(signal)]);
  }

  async delete(id: string): Promise<void> {
    await this.checked("delete", ["delete", "--force", id]);
  }

  async update(id: string, resourcesFile: string): Promise<void> {
    await this.checked("update", ["update", "--resources", resourcesFile, id]);
  }

  /** `crun state`: the parsed JSON, or undefined when crun does not know the container. */
  async state(id: string): Promise<{ status?: string; pid?: number } | undefined> {
    const r = await this.runner.run(this.binary, ["--root", this.root, "state", id]);
    if (r.code !== 0) return undefined;
    return JSON.parse(r.stdout) as { status?: string; pid?: number };
  }

  private async launch(step: string, args: readonly string[], launch: LaunchArgs): Promise<void> {
    await rm(launch.logFile, { force: true });
    const r = await this.runner.run(this.binary, ["--root", this.root, "--log", `file:${launch.logFile}`, "--log-format", "json", ...args], {
      stdio: launch.stdio,
    });
    if (r.code === 0) return;
    const message = await lastLogMessage(launch.logFile);
    throw new VmpodError("Internal", `crun ${step}: ${message || `exit status ${r.code}`}`);
  }

  private async checked(step: string, args: readonly string[]): Promise<RunResult> {
    const r = await this.runner.run(this.binary, ["--root", this.root, ...args]);
    if (r.code !== 0) {
      const message = r.stderr.split("\n").filter((l) => l.trim() !== "").pop() ?? `exit status ${r.code}`;
      throw new VmpodError("Internal", `crun ${step}: ${message}`);
    }
    return r;
  }
}

function consoleArgs(args: LaunchArgs): string[] {
  return args.consoleSocket === undefined ? [] : ["--console-socket", args.consoleSocket];
}

/** The message of the last error crun wrote to its JSON log. */
async function lastLogMessage(path: string): Promise<string> {
  const text = await readFile(path, "utf8").catch(() => "");
  const lines = text.split("\n").filter((l) => l.trim() !== "");
  for (const line of lines.reverse()) {
    try {
      const record = JSON.parse(line) as { msg?: unknown };
      if (typeof record.msg === "string") return record.msg;
    } catch {
      return line;
    }
  }
  return "";
}
