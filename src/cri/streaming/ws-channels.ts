/**
 * Kubernetes' channel protocol over one WebSocket: every message starts
 * with its channel number (a byte, or with the base64 protocols an ASCII
 * digit followed by base64 text). A channel is a readable stream of what
 * the client sends on it or a writable stream to the client. From v5 a
 * message `[255, n]` closes channel n (the client's stdin EOF).
 * Back-pressure: the socket stops being read while an input channel's
 * buffer is full, and a write completes once its message reached the socket.
 */
import { Readable, Writable } from "node:stream";
import type { WebSocket, RawData } from "ws";
import { VmpodError, messageOf } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";

export type ChannelEncoding = "binary" | "base64";

/** The close signal of the v5 protocols. */
export const CLOSE_CHANNEL = 255;

const INPUT_HIGH_WATER = 64 * 1024;

export class ChannelSocket {
  private readonly inputs = new Map<number, Readable>();
  private readonly full = new Set<number>();
  private readonly ended = new Set<number>();
  /** Resolves when the WebSocket has closed. */
  readonly closed: Promise<void>;

  constructor(
    private readonly ws: WebSocket,
    private readonly encoding: ChannelEncoding,
    private readonly logger: Logger,
    private readonly closeSignals = false,
  ) {
    this.closed = new Promise((resolve) => ws.once("close", () => resolve()));
    ws.on("message", (data, isBinary) => this.onMessage(data, isBinary));
    ws.on("error", (err) => logger.debug("websocket error", { err: messageOf(err) }));
    ws.once("close", () => {
      for (const channel of this.inputs.keys()) this.endInput(channel);
    });
  }

  /** A channel the client writes to. Messages on channels nobody asked for are dropped. */
  input(channel: number): Readable {
    const existing = this.inputs.get(channel);
    if (existing) return existing;
    const input = new Readable({
      highWaterMark: INPUT_HIGH_WATER,
      read: () => {
        if (this.full.delete(channel) && this.full.size === 0 && this.ws.isPaused) this.ws.resume();
      },
    });
    input.once("close", () => {
      if (this.full.delete(channel) && this.full.size === 0 && this.ws.isPaused) this.ws.resume();
    });
    this.inputs.set(channel, input);
    return input;
  }

  /** A channel this end writes to; the first message can be a prefix (the port number in port forwarding). */
  output(channel: number): Writable {
    return new Writable({
      write: (chunk: Buffer, _enc, callback) => this.send(channel, chunk, callback),
      final: (callback) => {
        if (this.closeSignals && this.ws.readyState === this.ws.OPEN) this.ws.send(Buffer.from([CLOSE_CHANNEL, channel]), { binary: true }, () => callback());
        else callback();
      },
    });
  }

  /** Closes the WebSocket normally (code 1000). */
  close(reason = ""): void {
    if (this.ws.readyState === this.ws.CONNECTING || this.ws.readyState === this.ws.OPEN) this.ws.close(1000, reason);
  }

  terminate(): void {
    this.ws.terminate();
  }

  private endInput(channel: number): void {
    const input = this.inputs.get(channel);
    if (!input || this.ended.has(channel)) return;
    this.ended.add(channel);
    input.push(null);
    if (this.full.delete(channel) && this.full.size === 0 && this.ws.isPaused) this.ws.resume();
  }

  private send(channel: number, chunk: Buffer, callback: (err?: Error | null) => void): void {
    if (this.ws.readyState !== this.ws.OPEN) return callback(new VmpodError("Unavailable", "websocket is closed"));
    const message =
      this.encoding === "binary" ? Buffer.concat([Buffer.from([channel]), chunk]) : String.fromCharCode(0x30 + channel) + chunk.toString("base64");
    this.ws.send(message, { binary: this.encoding === "binary" }, (err) => callback(err ?? null));
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    let channel: number;
    let payload: Buffer;
    if (this.encoding === "base64") {
      if (isBinary || bytes.length === 0) return;
      channel = bytes[0]! - 0x30;
      payload = Buffer.from(bytes.subarray(1).toString("latin1"), "base64");
    } else {
      if (bytes.length === 0) return;
      channel = bytes[0]!;
      payload = bytes.subarray(1);
    }
    if (channel === CLOSE_CHANNEL && this.closeSignals) {
      const target = payload[0];
      if (target !== undefined) this.endInput(target);
      return;
    }
    const input = this.inputs.get(channel);
    if (!input || this.ended.has(channel) || input.destroyed) {
      this.logger.debug("websocket message on a channel not read", { channel });
      return;
    }
    if (payload.length === 0) return;
    if (!input.push(payload)) {
      this.full.add(channel);
      if (!this.ws.isPaused) this.ws.pause();
    }
  }
}
