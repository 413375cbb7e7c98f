/**
 * A process an earlier vmpod launched and a restarted one takes over: a pod
 * VM's QEMU, its virtiofsd. It is not this vmpod's child, so its exit is
 * seen by watching /proc, and its exit status is unknown. It is known by
 * its pid and the time it started (a pid alone may be reused), both kept
 * on disk when it was launched.
 */
import { readFile } from "node:fs/promises";
import { VmpodError } from "../common/errors.js";
import { type ExitStatus, WatchedProcess } from "./process.js";

/** Names one process for as long as it lives. */
export interface ProcessRef {
  readonly pid: number;
  /** When it started, in clock ticks since boot (/proc/PID/stat, field 22). */
  readonly startTime: string;
}

/** How often an adopted process is looked at while it runs. */
const POLL_MS = 250;

/** The process's identity now; undefined once it has exited (zombies included). */
export async function processRef(pid: number): Promise<ProcessRef | undefined> {
  let stat: string;
  try {
    stat = await readFile(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name, in parentheses, may hold spaces and parentheses.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined || state === "Z" || state === "X") return undefined;
  return { pid, startTime };
}

export class AdoptedProcess extends WatchedProcess {
  private timer: NodeJS.Timeout | undefined;
  private markExited!: (status: ExitStatus) => void;
  private gone = false;

  /**
   * Takes over the process `ref` names. NotFound when it no longer runs, or
   * its pid now belongs to another process.
   */
  static async adopt(name: string, ref: ProcessRef, stderr?: { readonly path: string; readonly limit: number }): Promise<AdoptedProcess> {
    const now = await processRef(ref.pid);
    if (!now || now.startTime !== ref.startTime) throw new VmpodError("NotFound", `${name} (pid ${ref.pid}) no longer runs`);
    let markExited!: (status: ExitStatus) => void;
    const exited = new Promise<ExitStatus>((resolve) => (markExited = resolve));
    const adopted = new AdoptedProcess(name, ref, exited, stderr);
    adopted.markExited = markExited;
    adopted.schedule();
    return adopted;
  }

  private constructor(
    name: string,
    readonly ref: ProcessRef,
    exited: Promise<ExitStatus>,
    stderr: { readonly path: string; readonly limit: number } | undefined,
  ) {
    super(name, ref.pid, exited, stderr);
  }

  /** Looks at once whether the process has exited (when a connection to it closed, say). */
  async check(): Promise<void> {
    if (this.gone) return;
    const now = await processRef(this.ref.pid);
    if (now && now.startTime === this.ref.startTime) return;
    this.gone = true;
    clearTimeout(this.timer);
    this.markExited({ code: null, signal: null });
  }

  private schedule(): void {
    this.timer = setTimeout(() => {
      void this.check().then(() => {
        if (!this.gone) this.schedule();
      });
    }, POLL_MS);
    // Watching must not keep vmpod alive on its own.
    this.timer.unref();
  }
}
