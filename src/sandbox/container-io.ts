/**
 * A running container's output: read from its runtime once, written to its
 * CRI log and copied to whoever is attached, with back-pressure from the
 * log (an attached client that cannot keep up is dropped, never waited
 * for). And the wiring of an exec or attach client to a process's streams.
 */
import { once } from "node:events";
import { PassThrough, type Readable, type Writable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { ProcessIo } from "./process-io.js";
import type { ClientStreams } from "./runtime.js";

/** Where a container's log goes: the CRI log writer, or nowhere. */
export interface LogSink {
  consume(stream: "stdout" | "stderr", source: Readable): Promise<void>;
  reopen(): Promise<void>;
  close(): Promise<void>;
}

/** Bytes an attached client may fall behind before it is dropped. */
const ATTACH_SLACK = 1 << 20;

export class OutputPump {
  private readonly attached = { stdout: new Set<Writable>(), stderr: new Set<Writable>() };
  readonly done: Promise<void>;

  constructor(
    io: ProcessIo,
    private readonly log: LogSink | undefined,
    private readonly logger: Logger,
  ) {
    const pumps = [this.pump("stdout", io.stdout)];
    if (io.stderr) pumps.push(this.pump("stderr", io.stderr));
    this.done = Promise.all(pumps).then(() => undefined);
  }

  /** Copies the container's output to a client until it ends or `until` resolves. */
  attach(stdout: Writable | undefined, stderr: Writable | undefined): () => void {
    if (stdout) this.attached.stdout.add(stdout);
    if (stderr) this.attached.stderr.add(stderr);
    return () => {
      if (stdout) this.attached.stdout.delete(stdout);
      if (stderr) this.attached.stderr.delete(stderr);
    };
  }

  private async pump(which: "stdout" | "stderr", source: Readable): Promise<void> {
    const toLog = new PassThrough();
    const logging = this.log ? this.log.consume(which, toLog) : pipeline(toLog, devNull());
    try {
      for await (const chunk of source) {
        for (const client of this.attached[which]) {
          if (client.writableLength > ATTACH_SLACK) this.attached[which].delete(client);
          else client.write(chunk);
        }
        if (!toLog.write(chunk)) await once(toLog, "drain");
      }
    } catch (err) {
      this.logger.debug("container output ended", { stream: which, err: messageOf(err) });
    } finally {
      toLog.end();
      await logging.catch((err: unknown) => this.logger.warn("could not write the container log", { stream: which, err: messageOf(err) }));
    }
  }
}

function devNull(): Writable {
  return new PassThrough().resume();
}

/**
 * Connects a client to a process: its stdin into the process, the
 * process's output to the client, resizes to the terminal. Resolves when the
 * process's output has ended.
 */
export async function connectClient(io: ProcessIo, client: ClientStreams, logger: Logger): Promise<void> {
  const tasks: Promise<unknown>[] = [];
  if (client.stdin && io.stdin) {
    const stdin = io.stdin;
    void pipeline(client.stdin, stdin).catch((err: unknown) => logger.debug("exec stdin ended", { err: messageOf(err) }));
  }
  tasks.push(client.stdout ? pipeline(io.stdout, client.stdout, { end: false }) : pipeline(io.stdout, devNull()));
  if (io.stderr) tasks.push(client.stderr ? pipeline(io.stderr, client.stderr, { end: false }) : pipeline(io.stderr, devNull()));
  if (client.resize) {
    const resize = client.resize;
    void (async () => {
      for await (const size of resize) await io.resize(size.height, size.width).catch(() => undefined);
    })().catch(() => undefined);
  }
  await Promise.all(tasks.map((t) => t.catch((err: unknown) => logger.debug("exec output ended", { err: messageOf(err) }))));
}
