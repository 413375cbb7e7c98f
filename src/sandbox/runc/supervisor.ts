/**
 * A container's supervisor: what stands in for conmon. One small busybox
 * `sh` per container, started in its own session so that it outlives the
 * daemon, runs the OCI runtime in the foreground (`run --keep`): the
 * runtime stays the container's parent and returns its exit status. The
 * supervisor appends the container's stdout and stderr to files (never
 * blocking and never losing output while vmpod is down; vmpod tails them
 * and frees what it has read, see output-tail.ts), and when the runtime
 * returns it reads the container's memory cgroup OOM-kill count (still
 * there thanks to `--keep`) and writes "<status> <oom kills>" to the exit
 * file, atomically. vmpod reads that file, whether it saw the exit or
 * started again afterwards.
 *
 * A container with a terminal runs under util-linux script(1), which gives
 * the runtime the terminal it wants on its own stdio (and through which it
 * is resized, first-terminal.ts).
 *
 * Memory per container, measured here with four idle containers (the
 * integration test prints it): the supervisor sh 1.7 MiB RSS, 0.5 MiB PSS;
 * runc 1.1 in the foreground 10 MiB RSS, 3.7 MiB PSS: about 4.2 MiB of
 * the host's memory per container. (crun would be lighter, but refuses
 * this host's hybrid cgroups.)
 *
 * Without `--keep` (crun) the runtime removes the cgroup before the
 * supervisor can read it, and OOM kills are not seen.
 */
import { spawn } from "node:child_process";
import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { VmpodError } from "../../common/errors.js";
import { exists } from "../../common/fs.js";
import type { ContainerPaths } from "./layout.js";

/** What the supervisor runs; every path comes as an argument, nothing is interpolated. */
const SCRIPT = `
rt=$1 root=$2 id=$3 dir=$4 memcg=$5 stdin=$6 tty=$7 keep=$8 script=$9
cd "$dir" || exit 1
echo $$ > supervisor.pid.tmp && mv supervisor.pid.tmp supervisor.pid
if [ "$stdin" = fifo ]; then exec 0<stdin; else exec 0</dev/null; fi
if [ "$tty" = 1 ]; then
  "$script" -q -e -f -c "exec $rt --root $root run $keep --bundle bundle --pid-file pid $id" /dev/null >>stdout 2>>stderr
else
  "$rt" --root "$root" run $keep --bundle bundle --pid-file pid "$id" >>stdout 2>>stderr
fi
code=$?
oom=0
if [ -r "$memcg/memory.oom_control" ]; then
  while read k v; do if [ "$k" = oom_kill ]; then oom=$v; fi; done < "$memcg/memory.oom_control"
fi
echo "$code $oom" > exit.tmp && mv exit.tmp exit
`;

export interface SupervisorOptions {
  readonly busybox: string;
  readonly runtime: string;
  readonly runtimeRoot: string;
  readonly containerId: string;
  readonly paths: ContainerPaths;
  /** The container's memory cgroup directory (cgroup v1), for its OOM-kill count. */
  readonly memoryCgroup: string;
  readonly stdin: boolean;
  readonly terminal: boolean;
  /** Whether the runtime knows `run --keep` (runc does, crun does not). */
  readonly keep: boolean;
  readonly script: string;
}

/** Starts a container's supervisor, detached; returns its pid. */
export function startSupervisor(o: SupervisorOptions): number {
  if (o.terminal && /[\s'"\\$`]/.test(`${o.runtime}${o.runtimeRoot}${o.containerId}`)) {
    throw new VmpodError("InvalidArgument", "the runtime path and state root of a container with a terminal must not hold spaces or quotes");
  }
  const args = ["sh", "-c", SCRIPT, "vmpod-supervisor", o.runtime, o.runtimeRoot, o.containerId, o.paths.dir, o.memoryCgroup, o.stdin ? "fifo" : "null", o.terminal ? "1" : "0", o.keep ? "--keep" : "", o.script];
  const child = spawn(o.busybox, args, { detached: true, stdio: "ignore" });
  child.on("error", () => undefined);
  child.unref();
  if (child.pid === undefined) throw new VmpodError("FailedPrecondition", `could not start the supervisor (${o.busybox})`);
  return child.pid;
}

export interface ExitRecord {
  /** The exit status: the code, or 128 + signal. */
  readonly status: number;
  readonly oomKills: number;
}

/** The exit file's record, or undefined while the container has not exited. */
export async function readExit(paths: ContainerPaths): Promise<ExitRecord | undefined> {
  let text: string;
  try {
    text = await readFile(paths.exit, "utf8");
  } catch {
    return undefined;
  }
  return parseExit(text);
}

export function parseExit(text: string): ExitRecord {
  const [status, oom] = text.trim().split(/\s+/);
  const s = Number(status);
  const o = Number(oom ?? "0");
  return { status: Number.isInteger(s) && s >= 0 ? s : 255, oomKills: Number.isInteger(o) && o >= 0 ? o : 0 };
}

/** The supervisor's pid when it still runs (its command line is checked, not just the number). */
export async function liveSupervisor(paths: ContainerPaths): Promise<number | undefined> {
  let pid: number;
  try {
    pid = Number((await readFile(paths.supervisorPid, "utf8")).trim());
  } catch {
    return undefined;
  }
  if (!Number.isInteger(pid) || pid <= 0) return undefined;
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    if (/\) Z /.test(stat)) return undefined;
    return cmdline.split("\0").includes(paths.dir) ? pid : undefined;
  } catch {
    return undefined;
  }
}

const POLL_MS = 500;
/** How long a supervisor that is gone without an exit file is given to write it (it may be renaming). */
const LOST_GRACE_MS = 1_000;

/**
 * Resolves with the exit record once the container has exited: the exit
 * file, watched (inotify) and polled. A supervisor that is gone without
 * writing one (killed) gives status 255, lost: true; a container removed
 * meanwhile is NotFound.
 */
export async function waitForExit(paths: ContainerPaths, options: { signal?: AbortSignal } = {}): Promise<ExitRecord & { lost?: boolean }> {
  const { signal } = options;
  let lostSince: number | undefined;
  for (;;) {
    signal?.throwIfAborted();
    const record = await readExit(paths);
    if (record) return record;
    if (!(await exists(paths.dir))) throw new VmpodError("NotFound", `container ${paths.dir} was removed`);
    const started = await exists(paths.supervisorPid);
    if (started && (await liveSupervisor(paths)) === undefined) {
      lostSince ??= Date.now();
      if (Date.now() - lostSince >= LOST_GRACE_MS) return { status: 255, oomKills: 0, lost: true };
    } else {
      lostSince = undefined;
    }
    await changeIn(paths.dir, POLL_MS, signal);
  }
}

/**
 * Waits until the runtime has started the container (its pid file) or
 * failed to (the exit file without a pid file), up to `timeoutMs`.
 */
export async function waitForStart(paths: ContainerPaths, timeoutMs: number): Promise<{ started: true } | { started: false; exit: ExitRecord | undefined }> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await exists(paths.pid)) return { started: true };
    const exit = await readExit(paths);
    if (exit) return (await exists(paths.pid)) ? { started: true } : { started: false, exit };
    await changeIn(paths.dir, 50);
  }
  return { started: false, exit: undefined };
}

/** Resolves on a change in `dir` or after `ms`, whichever comes first. */
function changeIn(dir: string, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let watcher: FSWatcher | undefined;
    const done = () => {
      clearTimeout(timer);
      watcher?.close();
      signal?.removeEventListener("abort", onAbort);
      resolve();
    };
    const onAbort = () => {
      clearTimeout(timer);
      watcher?.close();
      reject(new VmpodError("Canceled", "wait canceled", { cause: signal?.reason }));
    };
    const timer = setTimeout(done, ms);
    try {
      watcher = watch(dir, { persistent: false }, done);
      watcher.on("error", () => undefined);
    } catch {
      // polling alone
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
