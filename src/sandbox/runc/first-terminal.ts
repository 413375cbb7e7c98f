/**
 * The terminal of a host container's first process, and its resizing.
 *
 * The supervisor runs the OCI runtime in the foreground under util-linux
 * script(1) (supervisor.ts): script owns a pseudoterminal and gives its
 * slave to the runtime as stdin, stdout and stderr; the runtime allocates
 * the container's own terminal, copies between the two, and on SIGWINCH
 * copies the size of its stdin to the container's terminal, whose
 * foreground process group then gets SIGWINCH in turn. The pair belongs to
 * the supervision, not to the daemon (it outlives a daemon restart), so a
 * resize reaches it through the runtime: its stdin, opened again through
 * /proc, gets the new size, and the runtime gets SIGWINCH (the kernel sends
 * it too when the runtime's session has that terminal).
 *
 * The runtime is the parent of the container's first process (the pid
 * file) and is checked to be this container's `run` before anything is
 * done to it, so a recycled pid is never touched. A daemon that started
 * again finds it the same way.
 */
import { closeSync, openSync, constants as fsConstants } from "node:fs";
import { readFile } from "node:fs/promises";
import { VmpodError } from "../../common/errors.js";
import { exists } from "../../common/fs.js";
import type { OciSpec } from "../../common/oci-spec.js";
import type { ContainerPaths } from "./layout.js";
import { setWindowSize } from "./libc.js";

/**
 * Sets the window size of the container's first process's terminal.
 * Nothing happens once the container has exited; a container without a
 * terminal, or not started, is FailedPrecondition.
 */
export async function resizeFirstTerminal(paths: ContainerPaths, containerId: string, rows: number, columns: number): Promise<void> {
  if (!isSize(rows) || !isSize(columns)) throw new VmpodError("InvalidArgument", `bad terminal size ${rows}x${columns}`);
  const config = JSON.parse(await readFile(paths.config, "utf8")) as OciSpec;
  if (config.process?.terminal !== true) throw new VmpodError("FailedPrecondition", `the first process of container ${containerId} has no terminal`);
  if (await exists(paths.exit)) return;
  const runtime = await runtimeOf(paths, containerId);
  if (runtime === undefined) {
    if (await exists(paths.exit)) return;
    throw new VmpodError("FailedPrecondition", `container ${containerId} is not running under its runtime`);
  }
  let fd: number;
  try {
    // The slave script(1) gave the runtime; never this daemon's controlling terminal.
    fd = openSync(`/proc/${runtime}/fd/0`, fsConstants.O_RDWR | fsConstants.O_NOCTTY | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw new VmpodError("FailedPrecondition", `the terminal of container ${containerId} is gone`, { cause: err });
  }
  try {
    setWindowSize(fd, rows, columns);
  } catch (err) {
    throw new VmpodError("FailedPrecondition", `the runtime of container ${containerId} has no terminal to resize`, { cause: err });
  } finally {
    closeSync(fd);
  }
  try {
    process.kill(runtime, "SIGWINCH");
  } catch {
    // exited meanwhile: nothing left to resize
  }
}

/** The pid of the runtime running the container in the foreground, if it still runs. */
async function runtimeOf(paths: ContainerPaths, containerId: string): Promise<number | undefined> {
  const init = await readPid(paths.pid);
  if (init === undefined) return undefined;
  const parent = parentOf(await readFile(`/proc/${init}/stat`, "utf8").catch(() => ""));
  if (parent === undefined || parent <= 1) return undefined;
  const argv = (await readFile(`/proc/${parent}/cmdline`, "utf8").catch(() => "")).split("\0").filter((a) => a !== "");
  // `<runtime> --root <root> run [--keep] --bundle bundle --pid-file pid <id>`
  if (argv.at(-1) !== containerId || !argv.includes("run") || argv.includes("exec")) return undefined;
  return parent;
}

async function readPid(path: string): Promise<number | undefined> {
  const pid = Number((await readFile(path, "utf8").catch(() => "")).trim());
  return Number.isInteger(pid) && pid > 0 ? pid : undefined;
}

/** The parent pid from the text of /proc/PID/stat (the command may hold spaces and parentheses). */
export function parentOf(stat: string): number | undefined {
  const close = stat.lastIndexOf(")");
  if (close < 0) return undefined;
  const ppid = Number(stat.slice(close + 2).split(" ")[1]);
  return Number.isInteger(ppid) ? ppid : undefined;
}

function isSize(n: number): boolean {
  return Number.isInteger(n) && n >= 0 && n <= 0xffff;
}
