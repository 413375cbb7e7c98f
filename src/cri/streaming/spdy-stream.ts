/**
 * One SPDY stream as a Node Duplex: what the peer sends on it is readable,
 * what is written goes out as data frames, `end()` sends FIN. Flow control
 * lives here per stream: the receive window is given back to the peer only
 * as the reader consumes, and writes wait for the peer's window when the
 * session enforces it.
 */
import { Duplex } from "node:stream";
import { DEFAULT_WINDOW } from "./spdy-frames.js";

/** What a stream needs from its session. */
export interface StreamHost {
  sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void>;
  sendWindowUpdate(stream: SpdyStream, delta: number): void;
  sendReset(stream: SpdyStream, status: number): void;
  /** Called when a stream's buffered input crosses its high-water mark either way. */
  congestionChanged(stream: SpdyStream): void;
  /** Called once when the stream is done on the wire (both halves closed, or reset). */
  streamDone(stream: SpdyStream): void;
}

export class SpdyStream extends Duplex {
  /** Bytes the peer may still send before we give window back. */
  receiveWindow: number;
  /** Bytes we may still send (meaningful when the session enforces the peer's window). */
  sendWindow: number;
  /** The peer closed its half (FIN) or the stream was reset. */
  remoteClosed = false;
  /** This end closed its half. */
  localClosed = false;
  /** Reset by either end. */
  reset = false;
  /** The RST_STREAM status the peer sent, if it reset the stream. */
  resetStatus: number | undefined;

  private received = 0;
  private acknowledged = 0;
  private windowWaiters: (() => void)[] = [];
  private finished = false;

  constructor(
    readonly id: number,
    readonly headers: ReadonlyMap<string, readonly string[]>,
    private readonly host: StreamHost,
    options: { readonly receiveWindow: number; readonly sendWindow: number },
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: options.receiveWindow });
    this.receiveWindow = options.receiveWindow;
    this.sendWindow = options.sendWindow;
  }

  /** The first value of a header, or "". */
  header(name: string): string {
    return this.headers.get(name.toLowerCase())?.[0] ?? "";
  }

  /**
   * More input buffered than the window allows: only a peer ignoring windows
   * gets here, and the session stops reading until the reader catches up.
   */
  get congested(): boolean {
    return !this.remoteClosed && this.readableLength > this.readableHighWaterMark;
  }

  /** Data from the peer. Returns false when the peer sent more than its window allowed. */
  receive(data: Buffer): boolean {
    if (this.remoteClosed) return true;
    this.received += data.length;
    this.receiveWindow -= data.length;
    const wasCongested = this.congested;
    this.push(data);
    if (this.congested !== wasCongested) this.host.congestionChanged(this);
    this.giveBackWindow();
    return this.receiveWindow >= 0;
  }

  /** The peer's FIN. */
  receiveFin(): void {
    if (this.remoteClosed) return;
    this.remoteClosed = true;
    this.push(null);
    this.host.congestionChanged(this);
    this.maybeDone();
  }

  /** The peer's RST_STREAM, or the session going away under the stream. */
  receiveReset(status: number | undefined): void {
    if (this.finished) return;
    this.reset = true;
    this.resetStatus = status;
    this.remoteClosed = true;
    this.localClosed = true;
    this.wakeWriters();
    this.maybeDone();
    this.destroy();
  }

  /** The peer's WINDOW_UPDATE, or a change of its initial window size. */
  addSendWindow(delta: number): void {
    this.sendWindow += delta;
    if (this.sendWindow > 0) this.wakeWriters();
  }

  /** Resolves when the send window may have opened (or the stream closed). */
  waitForWindow(): Promise<void> {
    return new Promise((resolve) => this.windowWaiters.push(resolve));
  }

  wakeWriters(): void {
    const waiters = this.windowWaiters;
    this.windowWaiters = [];
    for (const wake of waiters) wake();
  }

  /** Every read (paused, flowing, piped or iterated) may free window for the peer. */
  override read(size?: number): unknown {
    const chunk: unknown = super.read(size);
    this.giveBackWindow();
    if (chunk !== null) this.host.congestionChanged(this);
    return chunk;
  }

  override _read(): void {
    this.giveBackWindow();
    this.host.congestionChanged(this);
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.host.sendData(this, chunk, false).then(() => callback(), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    if (this.localClosed) return callback();
    this.host.sendData(this, Buffer.alloc(0), true).then(() => {
      this.localClosed = true;
      this.maybeDone();
      callback();
    }, callback);
  }

  /**
   * Destroyed by its user: after the peer finished sending and without an
   * error, this half closes with FIN (a reader that stops at the end, such
   * as an async iteration); otherwise the stream is reset.
   */
  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.finished && !this.reset && !error && this.remoteClosed && !this.localClosed) {
      this.host.sendData(this, Buffer.alloc(0), true).catch(() => undefined);
      this.localClosed = true;
      this.maybeDone();
    }
    if (!this.finished) {
      if (!this.reset) this.host.sendReset(this, 5 /* CANCEL */);
      this.reset = true;
      this.remoteClosed = true;
      this.localClosed = true;
      this.wakeWriters();
      this.maybeDone();
    }
    callback(error);
  }

  /** Tells the peer it may send as much again as the reader took, in batches of half a window. */
  private giveBackWindow(): void {
    if (this.remoteClosed) return;
    const consumed = this.received - this.readableLength - this.acknowledged;
    if (consumed <= 0) return;
    if (consumed < DEFAULT_WINDOW / 2 && this.readableLength > 0) return;
    this.acknowledged += consumed;
    this.receiveWindow += consumed;
    this.host.sendWindowUpdate(this, consumed);
  }

  private maybeDone(): void {
    if (this.finished || !(this.remoteClosed && this.localClosed)) return;
    this.finished = true;
    this.host.streamDone(this);
  }
}
