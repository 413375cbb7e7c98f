/**
 * Starting a container process through crun: its standard streams (pipes,
 * or a terminal crun allocates in the container), `crun create` or
 * `crun exec --detach`, its pid from the pid file, and the watch on its exit.
 */
import { readFile } from "node:fs/promises";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import type { Crun, LaunchArgs } from "./crun.js";
import { ContainerProcess } from "./process.js";
import { ConsoleSocket, TerminalIo, type PtyLibc } from "./pty.js";
import type { Reaper } from "./reaper.js";
import type { ProcessIo } from "./stdio/io.js";
import { PipeIo, type PipeLibc } from "./stdio/pipes.js";

export interface LaunchDeps {
  readonly libc: PtyLibc & PipeLibc & { setWindowSize(fd: number, rows: number, columns: number): void };
  readonly crun: Crun;
  readonly reaper: Reaper;
  readonly log: Logger;
}

export interface LaunchRequest {
  readonly containerId: string;
  readonly execId: string;
  readonly terminal: boolean;
  readonly consoleSize?: { readonly rows: number; readonly columns: number };
  readonly pidFile: string;
  readonly logFile: string;
  /** A short path (unix socket paths are limited to 107 bytes). */
  readonly consoleSocketPath: string;
  /** `crun create` of this bundle, or `crun exec` of this process file. */
  readonly create?: { readonly bundle: string };
  readonly exec?: { readonly processFile: string };
}

export async function launch(deps: LaunchDeps, req: LaunchRequest): Promise<ContainerProcess> {
  const { libc, crun, reaper } = deps;
  const launched = reaper.beginLaunch();
  let pipes: PipeIo | undefined;
  let consoleSocket: ConsoleSocket | undefined;
  let io: ProcessIo | undefined;
  let pid: number | undefined;
  try {
    if (req.terminal) consoleSocket = await ConsoleSocket.listen(libc, req.consoleSocketPath);
    else pipes = PipeIo.create(libc);
    const args: LaunchArgs = {
      id: req.containerId,
      pidFile: req.pidFile,
      logFile: req.logFile,
      stdio: pipes ? pipes.childStdio : ["ignore", "ignore", "ignore"],
      ...(consoleSocket ? { consoleSocket: consoleSocket.path } : {}),
    };
    if (req.create) await crun.create(req.create.bundle, args);
    else await crun.exec(req.exec?.processFile ?? "", args);
    // The process holds its ends now; the agent's copies would keep its output from ever ending.
    pipes?.closeChildEnds();
    pid = await readPid(req.pidFile);
    const waitStatus = reaper.watch(pid);
    if (consoleSocket) {
      const master = consoleSocket.receive();
      io = new TerminalIo(libc, master);
      // crun has given the terminal this size before the process ran (a resize from here would come too late for it); this only repeats it.
      if (req.consoleSize) io.resize(req.consoleSize.rows, req.consoleSize.columns);
    } else {
      io = pipes as PipeIo;
    }
    return new ContainerProcess(req.execId, pid, io, waitStatus, deps.log.child({ containerId: req.containerId }));
  } catch (err) {
    if (pid !== undefined) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    (io ?? pipes)?.close();
    throw err;
  } finally {
    launched();
    await consoleSocket?.close();
  }
}

async function readPid(path: string): Promise<number> {
  const text = await readFile(path, "utf8").catch((err: unknown) => {
    throw new VmpodError("Internal", "crun wrote no pid file", { cause: err });
  });
  const pid = Number(text.trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new VmpodError("Internal", `crun wrote a bad pid file: ${JSON.stringify(text)}`);
  return pid;
}
