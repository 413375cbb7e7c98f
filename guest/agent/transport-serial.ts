/**
 * A virtio-serial port as the agent's channel. The port is a character
 * device, which Node (libuv) treats as a file, so it is read and written
 * with fs calls on the thread pool, a read blocking until the host sends.
 *
 * The host end is a unix socket chardev in QEMU: the host may connect,
 * disconnect and connect again. While nobody is connected on the host a
 * read returns 0 bytes; the agent then ends the current session (the ttRPC
 * server drops the calls in flight, whose answers would otherwise reach the
 * next client under reused stream ids) and polls until bytes arrive, which
 * opens the next session. The agent serves for as long as it lives.
 */
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Duplex } from "node:stream";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { sleep } from "../../src/common/time.js";
import type { Transport } from "./transport.js";

/** The byte stream under a serial transport: a device, or a fake in tests. */
export interface ByteDevice {
  /** Bytes read into `buffer`; 0 when the other end is not connected. */
  read(buffer: Buffer): Promise<number>;
  /** Bytes written; may be fewer than given. */
  write(data: Buffer): Promise<number>;
  close(): Promise<void>;
}

const READ_CHUNK = 64 * 1024;
const IDLE_POLL_MIN_MS = 5;
/** Short: a VM restored from a template finds its host gone and must see it back at once. */
const IDLE_POLL_MAX_MS = 10;
/** virtio_console may still be loading when the agent starts (under TCG, seconds). */
const PORT_WAIT_MS = 30_000;

export async function openSerialTransport(
  port: { name: string; portsDir: string; devDir: string },
  log: Logger,
  waitMs = PORT_WAIT_MS,
): Promise<SerialTransport> {
  const entry = await findPort(port.portsDir, port.name, waitMs);
  const path = join(port.devDir, entry);
  const handle = await open(path, "r+");
  const device: ByteDevice = {
    read: async (buffer) => (await handle.read(buffer, 0, buffer.length, null)).bytesRead,
    write: async (data) => (await handle.write(data, 0, data.length, null)).bytesWritten,
    close: () => handle.close(),
  };
  return new SerialTransport(device, `serial:${port.name} (${path})`, log);
}

/** The entry of `portsDir` (vportNpM) whose `name` file holds `name`, waiting for it to appear. */
export async function findPort(portsDir: string, name: string, waitMs: number): Promise<string> {
  const deadline = Date.now() + waitMs;
  let delay = 10;
  for (;;) {
    let entries: string[] = [];
    try {
      entries = await readdir(portsDir);
    } catch {
      // the class directory appears with the driver
    }
    for (const entry of entries.sort()) {
      const found = await readFile(join(portsDir, entry, "name"), "utf8").catch(() => "");
      if (found.trim() === name) return entry;
    }
    if (Date.now() >= deadline) {
      throw new VmpodError("Unavailable", `no virtio-serial port named ${name} in ${portsDir} after ${waitMs} ms`);
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 200);
  }
}

export class SerialTransport implements Transport {
  private session: SerialSession | undefined;
  private closed = false;
  private writing: Promise<void> = Promise.resolve();
  private loop: Promise<void> = Promise.resolve();

  constructor(
    private readonly device: ByteDevice,
    readonly description: string,
    private readonly log: Logger,
  ) {}

  async start(onStream: (stream: Duplex) => void): Promise<void> {
    this.loop = this.readLoop(onStream);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.endSession();
    // A read blocked on the thread pool finishes with the host's next bytes
    // or never: the agent exits after close, so it is not awaited.
    await this.writing;
    await this.device.close().catch(() => undefined);
  }

  /** Resolves when the read loop has stopped (after close). */
  get stopped(): Promise<void> {
    return this.loop;
  }

  private async readLoop(onStream: (stream: Duplex) => void): Promise<void> {
    let idle = IDLE_POLL_MIN_MS;
    while (!this.closed) {
      const buffer = Buffer.allocUnsafe(READ_CHUNK);
      let n: number;
      try {
        n = await this.device.read(buffer);
      } catch (err) {
        if (this.closed) return;
        this.log.warn("serial port read failed; waiting for the host", { err });
        n = 0;
      }
      if (this.closed) return;
      if (n === 0) {
        if (this.session) this.log.info("host disconnected");
        this.endSession();
        await sleep(idle);
        idle = Math.min(idle * 2, IDLE_POLL_MAX_MS);
        continue;
      }
      idle = IDLE_POLL_MIN_MS;
      let session = this.session;
      if (!session) {
        session = new SerialSession((chunk) => this.write(session as SerialSession, chunk), () => this.forget(session as SerialSession));
        this.session = session;
        this.log.info("host connected");
        onStream(session);
      }
      await session.deliver(buffer.subarray(0, n));
    }
  }

  private endSession(): void {
    const session = this.session;
    this.session = undefined;
    session?.finish();
  }

  private forget(session: SerialSession): void {
    if (this.session === session) this.session = undefined;
  }

  private write(session: SerialSession, chunk: Buffer): Promise<void> {
    const next = this.writing.then(async () => {
      let offset = 0;
      while (offset < chunk.length) {
        // Answers of a session that has ended are dropped, not sent to the next client.
        if (session.ended || this.closed) return;
        offset += await this.device.write(chunk.subarray(offset));
      }
    });
    this.writing = next.catch((err: unknown) => {
      this.log.warn("serial port write failed", { err });
      session.finish();
    });
    return this.writing;
  }
}

/** One host session on the port, as the Duplex the ttRPC server serves. */
class SerialSession extends Duplex {
  ended = false;
  private wantMore: (() => void) | undefined;

  constructor(
    private readonly send: (chunk: Buffer) => Promise<void>,
    private readonly onEnd: () => void,
  ) {
    super();
  }

  /** Pushes bytes from the host; resolves when the session wants more (or has ended). */
  deliver(chunk: Buffer): Promise<void> {
    if (this.ended) return Promise.resolve();
    if (this.push(chunk)) return Promise.resolve();
    return new Promise((resolve) => (this.wantMore = resolve));
  }

  /** Ends the session: the reader sees the end, later writes are dropped. */
  finish(): void {
    if (this.ended) return;
    this.ended = true;
    this.push(null);
    this.release();
    this.destroy();
  }

  override _read(): void {
    this.release();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (err?: Error | null) => void): void {
    if (this.ended) {
      callback();
      return;
    }
    this.send(chunk).then(() => callback(), callback);
  }

  override _destroy(err: Error | null, callback: (err?: Error | null) => void): void {
    this.ended = true;
    this.release();
    this.onEnd();
    callback(err);
  }

  private release(): void {
    const resolve = this.wantMore;
    this.wantMore = undefined;
    resolve?.();
  }
}
