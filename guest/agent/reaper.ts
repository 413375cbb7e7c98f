/**
 * Process supervision without conmon. The agent is a child subreaper, so a
 * container's processes (forked by crun, which then exits) become its
 * children. Their exit statuses are collected with waitpid(pid, WNOHANG) for
 * each pid the agent watches, when SIGCHLD arrives (Node delivers it to JS
 * listeners alongside libuv's own child handling; libuv waits only for the
 * pids it spawned). Never waitpid(-1): that would steal the statuses libuv
 * waits for.
 *
 * Orphans that are not ours (daemons that outlived their parent) are reaped
 * too, so no zombie accumulates: /proc is scanned for zombies whose parent
 * is the agent, skipping the pids child_process owns and the pids watched.
 * While a process is being launched its pid is not known yet, so the scan
 * waits until no launch is under way.
 */
import { readdir, readFile } from "node:fs/promises";
import type { Logger } from "../../src/common/log.js";
import { isErrno } from "./errno.js";

export interface ReaperLibc {
  setChildSubreaper(): void;
  waitpidNoHang(pid: number): number | undefined;
}

/** The exit status the agent reports: the exit code, or 128 + the signal that killed it. */
export function exitStatusOf(waitStatus: number): number {
  const signal = waitStatus & 0x7f;
  if (signal === 0) return (waitStatus >> 8) & 0xff; // WIFEXITED
  if (signal !== 0x7f) return 128 + signal; // WIFSIGNALED (0x7f is stopped)
  return 255;
}

/** State and parent pid from the text of /proc/PID/stat (the command may hold spaces and parentheses). */
export function parseProcStat(text: string): { state: string; ppid: number } | undefined {
  const close = text.lastIndexOf(")");
  if (close < 0) return undefined;
  const fields = text.slice(close + 2).split(" ");
  const state = fields[0];
  const ppid = Number(fields[1]);
  if (state === undefined || !Number.isInteger(ppid)) return undefined;
  return { state, ppid };
}

const ORPHAN_SCAN_DELAY_MS = 100;

export class Reaper {
  private readonly watched = new Map<number, (status: number) => void>();
  private launching = 0;
  private scanWanted = false;
  private scanTimer: NodeJS.Timeout | undefined;
  private readonly onSignal = () => this.collect();
  private started = false;

  constructor(
    private readonly libc: ReaperLibc,
    private readonly log: Logger,
    /** True for pids child_process owns. */
    private readonly ownedByNode: (pid: number) => boolean,
    private readonly procDir = "/proc",
  ) {}

  start(): void {
    if (this.started) return;
    this.libc.setChildSubreaper();
    process.on("SIGCHLD", this.onSignal);
    this.started = true;
  }

  stop(): void {
    process.off("SIGCHLD", this.onSignal);
    if (this.scanTimer) clearTimeout(this.scanTimer);
    this.started = false;
  }

  /** Resolves with the raw wait status of `pid`, a child of the agent, when it exits. */
  watch(pid: number): Promise<number> {
    const exited = new Promise<number>((resolve) => this.watched.set(pid, resolve));
    this.collect();
    return exited;
  }

  /** Marks a launch under way (the orphan scan waits); call the result when the pid is watched. */
  beginLaunch(): () => void {
    this.launching++;
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.launching--;
      if (this.launching === 0 && this.scanWanted) this.scheduleScan();
    };
  }

  private collect(): void {
    for (const [pid, resolve] of this.watched) {
      let status: number | undefined;
      try {
        status = this.libc.waitpidNoHang(pid);
      } catch (err) {
        // ECHILD: not our child (any more); nothing will ever report its status.
        this.log.warn("cannot wait for a container process", { pid, err });
        status = isErrno(err, "ECHILD") ? 255 << 8 : undefined;
      }
      if (status === undefined) continue;
      this.watched.delete(pid);
      resolve(status);
    }
    this.scanWanted = true;
    if (this.launching === 0) this.scheduleScan();
  }

  private scheduleScan(): void {
    if (this.scanTimer) return;
    this.scanTimer = setTimeout(() => {
      this.scanTimer = undefined;
      this.scanWanted = false;
      this.reapOrphans().catch((err: unknown) => this.log.warn("orphan scan failed", { err }));
    }, ORPHAN_SCAN_DELAY_MS);
    this.scanTimer.unref();
  }

  private async reapOrphans(): Promise<void> {
    const self = process.pid;
    for (const entry of await readdir(this.procDir)) {
      const pid = Number(entry);
      if (!Number.isInteger(pid) || pid <= 0 || this.watched.has(pid) || this.ownedByNode(pid)) continue;
      const stat = parseProcStat(await readFile(`${this.procDir}/${entry}/stat`, "utf8").catch(() => ""));
      if (!stat || stat.state !== "Z" || stat.ppid !== self) continue;
      // Checked again now: a launch may have started, or the pid been handed to child_process, meanwhile.
      if (this.launching > 0 || this.watched.has(pid) || this.ownedByNode(pid)) return;
      try {
        const status = this.libc.waitpidNoHang(pid);
        if (status !== undefined) this.log.debug("reaped an orphan", { pid, status: exitStatusOf(status) });
      } catch {
        // gone already
      }
    }
  }
}
