/**
 * Exec and attach on a running container: a command run to completion
 * with its output collected (ExecSync), a command wired to a streaming
 * client (Exec), and a client wired to the container's first process
 * (Attach).
 *
 * An exec with a terminal is made with the client's first size as its
 * console size: a resize applied once the process runs comes too late for
 * a command that reads its size at once (`stty size` saw 0x0).
 */
import type { Readable } from "node:stream";
import { VmpodError } from "../common/errors.js";
import { newId } from "../common/ids.js";
import type { Logger } from "../common/log.js";
import type { OciProcess } from "../common/oci-spec.js";
import { connectClient, type OutputPump } from "./container-io.js";
import type { PodSandbox } from "./controller.js";
import type { ClientStreams, ExecSyncResult, TerminalSize } from "./runtime.js";

/** How long an exec with a terminal waits for the client's first size (kubectl and crictl send it as soon as their streams are open). */
export const FIRST_SIZE_WAIT_MS = 1000;

/** The process of an exec: the container's own user, environment and directory, with `command`. */
export function execProcess(containerProcess: OciProcess | undefined, command: readonly string[], tty: boolean): OciProcess {
  if (command.length === 0) throw new VmpodError("InvalidArgument", "exec needs a command");
  const process: OciProcess = { ...(containerProcess ?? { args: [], cwd: "/", user: { uid: 0, gid: 0 } }), args: [...command], terminal: tty };
  delete process.consoleSize;
  return process;
}

function execId(): string {
  return newId().slice(0, 16);
}

export async function execSync(sandbox: PodSandbox, containerId: string, process: OciProcess, timeoutSec: number): Promise<ExecSyncResult> {
  const id = execId();
  const io = await sandbox.exec(containerId, id, process, { stdin: false });
  const collect = async (s: Readable | undefined) => {
    const chunks: Buffer[] = [];
    if (s) for await (const c of s) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  };
  const run = Promise.all([collect(io.stdout), collect(io.stderr), io.wait()]);
  if (timeoutSec > 0) {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<"expired">((resolve) => (timer = setTimeout(() => resolve("expired"), timeoutSec * 1000)));
    const first = await Promise.race([run, expired]).finally(() => clearTimeout(timer));
    if (first === "expired") {
      await sandbox.signal(containerId, id, 9).catch(() => undefined);
      throw new VmpodError("DeadlineExceeded", `command ${JSON.stringify(process.args)} in container ${containerId} timed out after ${timeoutSec} s`);
    }
  }
  const [stdout, stderr, exitCode] = await run;
  return { stdout, stderr, exitCode };
}

export async function execWithClient(sandbox: PodSandbox, containerId: string, process: OciProcess, streams: ClientStreams, logger: Logger): Promise<number> {
  let client = streams;
  if (process.terminal && streams.resize) {
    const { first, rest } = await firstSize(streams.resize, FIRST_SIZE_WAIT_MS);
    if (first && first.height > 0 && first.width > 0) process = { ...process, consoleSize: { height: first.height, width: first.width } };
    client = { ...streams, resize: rest };
  }
  const io = await sandbox.exec(containerId, execId(), process, { stdin: streams.stdin !== undefined });
  const [, code] = await Promise.all([connectClient(io, client, logger), io.wait()]);
  return code;
}

/**
 * The first size of `sizes` if one comes within `ms`, and the sizes after
 * it (a size that comes later is the first of those: nothing is lost).
 */
export async function firstSize(sizes: AsyncIterable<TerminalSize>, ms: number): Promise<{ first?: TerminalSize; rest: AsyncIterable<TerminalSize> }> {
  const it = sizes[Symbol.asyncIterator]();
  const pending = it.next();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<"expired">((resolve) => (timer = setTimeout(() => resolve("expired"), ms)));
  const got = await Promise.race([pending, expired]).finally(() => clearTimeout(timer));
  const rest: AsyncIterable<TerminalSize> = {
    async *[Symbol.asyncIterator]() {
      if (got === "expired") {
        const late = await pending;
        if (late.done) return;
        yield late.value;
      } else if (got.done) {
        return;
      }
      for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
    },
  };
  return got === "expired" || got.done ? { rest } : { first: got.value, rest };
}

/**
 * Copies the container's output to the client (from now on) and the
 * client's stdin to the container (when it was created with stdin), until
 * the client goes or the container exits.
 */
export async function attachClient(
  sandbox: PodSandbox,
  containerId: string,
  pump: OutputPump,
  container: { readonly stdin: boolean; readonly stdinOnce: boolean; readonly tty: boolean },
  streams: ClientStreams,
  exited: Promise<void>,
): Promise<void> {
  const detach = pump.attach(streams.stdout, streams.stderr);
  try {
    if (streams.stdin && container.stdin) {
      const io = sandbox.io(containerId, "", { stdin: true, terminal: container.tty });
      io.stdout.destroy();
      io.stderr?.destroy();
      if (io.stdin) streams.stdin.pipe(io.stdin, { end: container.stdinOnce });
    }
    if (streams.resize) {
      const io = sandbox.io(containerId, "", { stdin: false, terminal: true });
      io.stdout.destroy();
      const resize = streams.resize;
      void (async () => {
        for await (const size of resize) await io.resize(size.height, size.width).catch(() => undefined);
      })().catch(() => undefined);
    }
    const clientGone = streams.stdout ? new Promise((resolve) => streams.stdout?.once("close", resolve)) : new Promise(() => undefined);
    await Promise.race([exited, clientGone]);
  } finally {
    detach();
  }
}
