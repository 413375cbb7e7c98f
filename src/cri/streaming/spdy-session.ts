/**
 * A SPDY/3.1 connection over an upgraded socket, either end: it parses and
 * writes frames, keeps the streams, answers pings, goes away, and runs flow
 * control for the session and every stream.
 *
 * Flow control both ways: this end grants the peer a 64 KiB window per
 * stream and per session and gives it back only as readers consume, and it
 * stops reading the socket while a stream's buffer is full (so a peer that
 * ignores windows is held back by TCP instead). The peer's windows are
 * enforced once the peer shows it keeps them, by a SETTINGS frame with
 * INITIAL_WINDOW_SIZE or any WINDOW_UPDATE: Kubernetes' SPDY peers (kubectl,
 * crictl, kubelet's proxy) announce SPDY/3.1 but neither send nor read
 * WINDOW_UPDATE, and waiting for their window would stall output at 64 KiB.
 */
import { EventEmitter } from "node:events";
import type { Duplex } from "node:stream";
import { VmpodError, messageOf } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import {
  DEFAULT_WINDOW,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  FrameParser,
  GoAwayStatus,
  RstStatus,
  SettingId,
  encodeFrame,
  type Frame,
} from "./spdy-frames.js";
import { HeaderCompressor, HeaderDecompressor, type HeaderMap } from "./spdy-headers.js";
import { SpdyStream, type StreamHost } from "./spdy-stream.js";

/** Largest data frame this end sends. */
const MAX_DATA_FRAME = 32 * 1024;
/** Bytes of unparsed input buffered before the socket is paused. */
const MAX_PENDING_INPUT = 1024 * 1024;

export interface SpdySessionOptions {
  readonly role: "server" | "client";
  readonly logger: Logger;
  /** Bytes already read from the socket past the HTTP upgrade. */
  readonly head?: Buffer;
  /** Streams the peer may have open at once (server role). */
  readonly maxStreams?: number;
  /** Enforce the peer's windows from the start (a peer known to keep them). */
  readonly enforcePeerWindow?: boolean;
  /** How long a closing session waits for the peer to close its end before dropping the socket. */
  readonly lingerMs?: number;
}

interface SessionEvents {
  /** A stream the peer opened, already answered. */
  stream: [SpdyStream];
  close: [];
}

export class SpdySession extends EventEmitter<SessionEvents> implements StreamHost {
  private readonly parser = new FrameParser();
  private readonly compressor = new HeaderCompressor();
  private readonly decompressor = new HeaderDecompressor();
  private readonly streams = new Map<number, SpdyStream>();
  private readonly congested = new Set<SpdyStream>();
  private readonly replies = new Map<number, { resolve: (s: SpdyStream) => void; reject: (e: Error) => void; stream: SpdyStream }>();
  private readonly logger: Logger;
  private readonly maxStreams: number;
  private enforcePeerWindow: boolean;
  private peerInitialWindow = DEFAULT_WINDOW;
  private sessionSendWindow = DEFAULT_WINDOW;
  private sessionConsumed = 0;
  private nextStreamId: number;
  private lastPeerStreamId = 0;
  private headerTail: Promise<void> = Promise.resolve();
  private pumping = false;
  private closeRequested = false;
  /** The socket closed; buffered frames are being handled before the session ends. */
  private socketGone = false;
  /** Frames left unparsed while a stream was congested. */
  private heldFrames = false;
  private goneAway = false;
  private closedFlag = false;
  private drainWaiters: (() => void)[] = [];
  private sessionWindowWaiters: (() => void)[] = [];
  private lingerTimer: NodeJS.Timeout | undefined;
  private readonly lingerMs: number;
  /** Resolves when the socket has closed and every stream is gone. */
  readonly closed: Promise<void>;

  constructor(
    private readonly socket: Duplex,
    options: SpdySessionOptions,
  ) {
    super();
    this.logger = options.logger;
    this.maxStreams = options.maxStreams ?? 100;
    this.lingerMs = options.lingerMs ?? 10_000;
    this.enforcePeerWindow = options.enforcePeerWindow ?? false;
    this.nextStreamId = options.role === "client" ? 1 : 2;
    this.closed = new Promise((resolve) => this.once("close", resolve));
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("drain", () => this.wake("drain"));
    socket.on("error", (err) => this.logger.debug("spdy socket error", { err: messageOf(err) }));
    socket.on("close", () => this.onSocketClose());
    socket.on("end", () => this.endSocket());
    if (options.head && options.head.length > 0) this.onData(options.head);
  }

  /** Live streams. */
  get streamCount(): number {
    return this.streams.size;
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Opens a stream (client role) and resolves once the peer replied. */
  openStream(headers: HeaderMap, options: { fin?: boolean } = {}): Promise<SpdyStream> {
    if (this.closedFlag || this.goneAway) return Promise.reject(new VmpodError("Unavailable", "spdy session is closed"));
    const id = this.nextStreamId;
    this.nextStreamId += 2;
    const stream = this.newStream(id, headers);
    if (options.fin) stream.localClosed = true;
    const replied = new Promise<SpdyStream>((resolve, reject) => this.replies.set(id, { resolve, reject, stream }));
    this.sendHeaders(async () => {
      const block = await this.compressor.compress(headers);
      return encodeFrame({ kind: "syn_stream", streamId: id, associatedId: 0, priority: 0, slot: 0, flags: options.fin ? FLAG_FIN : 0, headerBlock: block });
    });
    return replied;
  }

  /** Sends a PING (client ids odd, server ids even); for tests and keepalive. */
  ping(id: number): void {
    this.write(encodeFrame({ kind: "ping", id }));
  }

  /** Sends SETTINGS (a client announcing its initial window, for instance). */
  settings(settings: readonly { id: number; value: number }[]): void {
    this.write(encodeFrame({ kind: "settings", flags: 0, settings: settings.map((s) => ({ ...s, flags: 0 })) }));
  }

  /** Says GOAWAY and closes the socket once what was queued is written and flushed. */
  close(): void {
    if (this.closedFlag || this.closeRequested) return;
    this.closeRequested = true;
    void this.headerTail.then(() => {
      if (!this.goneAway) {
        this.goneAway = true;
        this.write(encodeFrame({ kind: "goaway", lastGoodStreamId: this.lastPeerStreamId, status: GoAwayStatus.Ok }));
      }
      this.endSocket();
    });
  }

  /** Drops the connection at once. */
  destroy(): void {
    this.socket.destroy();
  }

  // --- StreamHost --------------------------------------------------------

  async sendData(stream: SpdyStream, data: Buffer, fin: boolean): Promise<void> {
    let offset = 0;
    do {
      if (stream.localClosed || stream.reset) throw new VmpodError("Canceled", `spdy stream ${stream.id} is closed`);
      if (this.closedFlag) throw new VmpodError("Unavailable", "spdy session is closed");
      let size = Math.min(data.length - offset, MAX_DATA_FRAME);
      if (this.enforcePeerWindow && size > 0) {
        size = Math.min(size, stream.sendWindow, this.sessionSendWindow);
        if (size <= 0) {
          await (stream.sendWindow <= 0 ? stream.waitForWindow() : new Promise<void>((r) => this.sessionWindowWaiters.push(r)));
          continue;
        }
        stream.sendWindow -= size;
        this.sessionSendWindow -= size;
      }
      const last = offset + size >= data.length;
      this.write(encodeFrame({ kind: "data", streamId: stream.id, flags: fin && last ? FLAG_FIN : 0, data: data.subarray(offset, offset + size) }));
      offset += size;
    } while (offset < data.length);
    if (this.socket.writableNeedDrain && !this.closedFlag) await new Promise<void>((r) => this.drainWaiters.push(r));
  }

  sendWindowUpdate(stream: SpdyStream, delta: number): void {
    if (this.closedFlag || stream.reset) return;
    this.write(encodeFrame({ kind: "window_update", streamId: stream.id, delta }));
    this.creditSession(delta);
  }

  sendReset(stream: SpdyStream, status: number): void {
    if (!this.closedFlag) this.write(encodeFrame({ kind: "rst_stream", streamId: stream.id, status }));
  }

  congestionChanged(stream: SpdyStream): void {
    if (stream.congested) this.congested.add(stream);
    else this.congested.delete(stream);
    this.updateReading();
  }

  streamDone(stream: SpdyStream): void {
    this.streams.delete(stream.id);
    this.congested.delete(stream);
    const reply = this.replies.get(stream.id);
    if (reply) {
      this.replies.delete(stream.id);
      reply.reject(new VmpodError("Unavailable", `spdy stream ${stream.id} reset before its reply`));
    }
    this.updateReading();
    if (this.goneAway && this.streams.size === 0) this.endSocket();
  }

  // --- input -------------------------------------------------------------

  private onData(chunk: Buffer): void {
    this.parser.push(chunk);
    this.pump();
  }

  private pump(): void {
    if (this.pumping || this.closedFlag) return;
    this.pumping = true;
    void this.drainFrames().finally(() => {
      this.pumping = false;
      if (this.socketGone) this.finish();
      else this.updateReading();
    });
  }

  private async drainFrames(): Promise<void> {
    try {
      // A stream that got more than its window holds everything behind it, as TCP would.
      for (let frame = this.nextFrame(); frame && !this.closedFlag; frame = this.nextFrame()) {
        const pending = this.handle(frame);
        if (pending) {
          this.updateReading();
          await pending;
        }
      }
    } catch (err) {
      this.protocolFailure(err);
    }
  }

  private nextFrame(): Frame | undefined {
    if (this.congested.size === 0 || this.socketGone) return this.parser.next();
    this.heldFrames = this.parser.pending > 0;
    return undefined;
  }

  /** Handles one frame; returns a promise only when it had to decompress headers. */
  private handle(frame: Frame): Promise<void> | undefined {
    switch (frame.kind) {
      case "data":
        this.onDataFrame(frame.streamId, frame.flags, frame.data);
        return undefined;
      case "syn_stream":
        return this.onSynStream(frame.streamId, frame.flags, frame.headerBlock);
      case "syn_reply":
        return this.decompressor.decompress(frame.headerBlock).then(() => this.onSynReply(frame.streamId, frame.flags));
      case "headers":
        return this.decompressor.decompress(frame.headerBlock).then(() => {
          if (frame.flags & FLAG_FIN) this.streams.get(frame.streamId)?.receiveFin();
        });
      case "rst_stream":
        this.streams.get(frame.streamId)?.receiveReset(frame.status);
        return undefined;
      case "settings":
        for (const s of frame.settings) {
          if (s.id !== SettingId.InitialWindowSize) continue;
          const delta = s.value - this.peerInitialWindow;
          this.peerInitialWindow = s.value;
          this.enforcePeerWindow = true;
          for (const stream of this.streams.values()) stream.addSendWindow(delta);
        }
        return undefined;
      case "ping":
        // Our own pings have our parity; echo the peer's.
        if ((frame.id & 1) !== (this.nextStreamId & 1)) this.write(encodeFrame(frame));
        return undefined;
      case "goaway":
        this.goneAway = true;
        if (this.streams.size === 0) this.endSocket();
        return undefined;
      case "window_update":
        this.enforcePeerWindow = true;
        if (frame.streamId === 0) {
          this.sessionSendWindow += frame.delta;
          const waiters = this.sessionWindowWaiters;
          this.sessionWindowWaiters = [];
          for (const wake of waiters) wake();
        } else {
          this.streams.get(frame.streamId)?.addSendWindow(frame.delta);
        }
        return undefined;
      case "unknown":
        return undefined;
    }
  }

  private onDataFrame(streamId: number, flags: number, data: Buffer): void {
    const stream = this.streams.get(streamId);
    if (!stream || stream.remoteClosed) {
      // Data after a reset or close: the session window still counts it.
      this.creditSession(data.length);
      if (!stream && streamId > 0 && streamId <= this.lastPeerStreamId) return;
      if (stream) this.rst(streamId, RstStatus.StreamAlreadyClosed);
      else this.rst(streamId, RstStatus.InvalidStream);
      return;
    }
    if (data.length > 0 && !stream.receive(data)) {
      this.logger.debug("spdy peer overran its window", { stream: streamId, window: stream.receiveWindow });
    }
    if (flags & FLAG_FIN) stream.receiveFin();
  }

  private async onSynStream(id: number, flags: number, block: Buffer): Promise<void> {
    const headers = await this.decompressor.decompress(block);
    if (this.goneAway || (id & 1) === (this.nextStreamId & 1) || id <= this.lastPeerStreamId) {
      this.rst(id, this.goneAway ? RstStatus.RefusedStream : RstStatus.ProtocolError);
      return;
    }
    this.lastPeerStreamId = id;
    if (this.streams.size >= this.maxStreams) {
      this.rst(id, RstStatus.RefusedStream);
      return;
    }
    const stream = this.newStream(id, headers);
    if (flags & FLAG_UNIDIRECTIONAL) stream.localClosed = true;
    if (flags & FLAG_FIN) stream.receiveFin();
    // The stream is handed out once its reply is on the wire, so no data can precede it.
    this.sendHeaders(
      async () => {
        const reply = await this.compressor.compress(new Map());
        return encodeFrame({ kind: "syn_reply", streamId: id, flags: 0, headerBlock: reply });
      },
      () => this.emit("stream", stream),
    );
  }

  private onSynReply(id: number, flags: number): void {
    const reply = this.replies.get(id);
    if (!reply) return;
    this.replies.delete(id);
    if (flags & FLAG_FIN) reply.stream.receiveFin();
    reply.resolve(reply.stream);
  }

  // --- output and lifecycle -----------------------------------------------

  private newStream(id: number, headers: HeaderMap): SpdyStream {
    const stream = new SpdyStream(id, headers, this, { receiveWindow: DEFAULT_WINDOW, sendWindow: this.peerInitialWindow });
    this.streams.set(id, stream);
    return stream;
  }

  /** Queues a frame whose header block must be compressed, keeping compression order on the wire. */
  private sendHeaders(build: () => Promise<Buffer>, then?: () => void): void {
    this.headerTail = this.headerTail.then(async () => {
      try {
        this.write(await build());
        if (!this.closedFlag) then?.();
      } catch (err) {
        if (!this.closedFlag) this.protocolFailure(err);
      }
    });
  }

  private write(frame: Buffer): void {
    if (this.closedFlag || this.socket.writableEnded || this.socket.destroyed) return;
    this.socket.write(frame);
  }

  private rst(streamId: number, status: number): void {
    this.write(encodeFrame({ kind: "rst_stream", streamId, status }));
  }

  private creditSession(bytes: number): void {
    this.sessionConsumed += bytes;
    if (this.sessionConsumed < DEFAULT_WINDOW / 2) return;
    this.write(encodeFrame({ kind: "window_update", streamId: 0, delta: this.sessionConsumed }));
    this.sessionConsumed = 0;
  }

  private updateReading(): void {
    if (this.closedFlag) return;
    const hold = this.congested.size > 0 || (this.pumping && this.parser.pending > MAX_PENDING_INPUT);
    if (hold && !this.socket.isPaused()) this.socket.pause();
    else if (!hold && this.socket.isPaused()) this.socket.resume();
    if (this.congested.size === 0 && this.heldFrames && !this.pumping) {
      this.heldFrames = false;
      this.pump();
    }
  }

  private protocolFailure(err: unknown): void {
    this.logger.warn("spdy session failed", { err: messageOf(err) });
    if (!this.goneAway) {
      this.goneAway = true;
      this.write(encodeFrame({ kind: "goaway", lastGoodStreamId: this.lastPeerStreamId, status: GoAwayStatus.ProtocolError }));
    }
    this.endSocket();
  }

  /**
   * Ends this end of the socket; if the peer has not closed its end after
   * the linger time, the socket is dropped.
   */
  private endSocket(): void {
    if (this.closedFlag) return;
    if (!this.socket.writableEnded) this.socket.end();
    if (this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => this.socket.destroy(), this.lingerMs);
    this.lingerTimer.unref();
  }

  private wake(_why: "drain" | "close"): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const wake of waiters) wake();
  }

  /** The socket closed: frames already received are still handled, then the session ends. */
  private onSocketClose(): void {
    if (this.closedFlag || this.socketGone) return;
    this.socketGone = true;
    if (this.pumping) return;
    if (this.parser.pending > 0) this.pump();
    else this.finish();
  }

  private finish(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.wake("close");
    for (const wake of this.sessionWindowWaiters.splice(0)) wake();
    for (const reply of this.replies.values()) reply.reject(new VmpodError("Unavailable", "spdy session closed"));
    this.replies.clear();
    for (const stream of [...this.streams.values()]) stream.receiveReset(undefined);
    this.streams.clear();
    this.congested.clear();
    this.compressor.close();
    this.decompressor.close();
    this.emit("close");
  }
}
