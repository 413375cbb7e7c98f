/**
 * SPDY/3.1 frames as bytes: the 8-byte frame header, the control frames the
 * streaming server exchanges with its clients, data frames, and an
 * incremental parser that cuts a byte stream into frames. Header blocks stay
 * compressed here; spdy-headers.ts owns their compression contexts.
 *
 * Control frame: 1 bit set, 15-bit version (3), 16-bit type, 8-bit flags,
 * 24-bit length. Data frame: 1 bit clear, 31-bit stream id, 8-bit flags,
 * 24-bit length.
 */
import { VmpodError } from "../../common/errors.js";

export const SPDY_VERSION = 3;

export const FrameType = {
  SynStream: 1,
  SynReply: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  Headers: 8,
  WindowUpdate: 9,
} as const;

/** FIN on SYN_STREAM, SYN_REPLY, HEADERS and data frames. */
export const FLAG_FIN = 0x01;
/** UNIDIRECTIONAL on SYN_STREAM. */
export const FLAG_UNIDIRECTIONAL = 0x02;
/** CLEAR_SETTINGS on SETTINGS. */
export const FLAG_CLEAR_SETTINGS = 0x01;

export const RstStatus = {
  ProtocolError: 1,
  InvalidStream: 2,
  RefusedStream: 3,
  UnsupportedVersion: 4,
  Cancel: 5,
  InternalError: 6,
  FlowControlError: 7,
  StreamInUse: 8,
  StreamAlreadyClosed: 9,
  FrameTooLarge: 11,
} as const;

export const GoAwayStatus = { Ok: 0, ProtocolError: 1, InternalError: 2 } as const;

export const SettingId = {
  UploadBandwidth: 1,
  DownloadBandwidth: 2,
  RoundTripTime: 3,
  MaxConcurrentStreams: 4,
  CurrentCwnd: 5,
  DownloadRetransRate: 6,
  InitialWindowSize: 7,
  ClientCertificateVectorSize: 8,
} as const;

/** The largest payload a frame's 24-bit length can carry. */
export const MAX_FRAME_PAYLOAD = 0xffffff;
/** Window size every stream and the session start with (SPDY/3.1). */
export const DEFAULT_WINDOW = 64 * 1024;

export interface Setting {
  readonly id: number;
  readonly flags: number;
  readonly value: number;
}

export type Frame =
  | { readonly kind: "data"; readonly streamId: number; readonly flags: number; readonly data: Buffer }
  | {
      readonly kind: "syn_stream";
      readonly streamId: number;
      readonly associatedId: number;
      readonly priority: number;
      readonly slot: number;
      readonly flags: number;
      readonly headerBlock: Buffer;
    }
  | { readonly kind: "syn_reply"; readonly streamId: number; readonly flags: number; readonly headerBlock: Buffer }
  | { readonly kind: "headers"; readonly streamId: number; readonly flags: number; readonly headerBlock: Buffer }
  | { readonly kind: "rst_stream"; readonly streamId: number; readonly status: number }
  | { readonly kind: "settings"; readonly flags: number; readonly settings: readonly Setting[] }
  | { readonly kind: "ping"; readonly id: number }
  | { readonly kind: "goaway"; readonly lastGoodStreamId: number; readonly status: number }
  | { readonly kind: "window_update"; readonly streamId: number; readonly delta: number }
  /** A control frame of a type this end does not know: SPDY says ignore it. */
  | { readonly kind: "unknown"; readonly type: number; readonly flags: number; readonly payload: Buffer };

const STREAM_ID_MASK = 0x7fffffff;

function controlFrame(type: number, flags: number, payload: Buffer): Buffer {
  if (payload.length > MAX_FRAME_PAYLOAD) throw new VmpodError("InvalidArgument", `spdy frame of ${payload.length} bytes is too large`);
  const frame = Buffer.allocUnsafe(8 + payload.length);
  frame.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  frame.writeUInt16BE(type, 2);
  frame.writeUInt32BE(((flags & 0xff) << 24) | payload.length, 4);
  payload.copy(frame, 8);
  return frame;
}

function words(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(values.length * 4);
  values.forEach((v, i) => b.writeUInt32BE(v >>> 0, i * 4));
  return b;
}

/** Encodes one frame (header blocks already compressed). */
export function encodeFrame(frame: Frame): Buffer {
  switch (frame.kind) {
    case "data": {
      if (frame.data.length > MAX_FRAME_PAYLOAD) throw new VmpodError("InvalidArgument", `spdy data frame of ${frame.data.length} bytes is too large`);
      const head = Buffer.allocUnsafe(8);
      head.writeUInt32BE(frame.streamId & STREAM_ID_MASK, 0);
      head.writeUInt32BE(((frame.flags & 0xff) << 24) | frame.data.length, 4);
      return Buffer.concat([head, frame.data]);
    }
    case "syn_stream": {
      const fixed = Buffer.allocUnsafe(10);
      fixed.writeUInt32BE(frame.streamId & STREAM_ID_MASK, 0);
      fixed.writeUInt32BE(frame.associatedId & STREAM_ID_MASK, 4);
      fixed.writeUInt8((frame.priority & 0x7) << 5, 8);
      fixed.writeUInt8(frame.slot & 0xff, 9);
      return controlFrame(FrameType.SynStream, frame.flags, Buffer.concat([fixed, frame.headerBlock]));
    }
    case "syn_reply":
      return controlFrame(FrameType.SynReply, frame.flags, Buffer.concat([words(frame.streamId & STREAM_ID_MASK), frame.headerBlock]));
    case "headers":
      return controlFrame(FrameType.Headers, frame.flags, Buffer.concat([words(frame.streamId & STREAM_ID_MASK), frame.headerBlock]));
    case "rst_stream":
      return controlFrame(FrameType.RstStream, 0, words(frame.streamId & STREAM_ID_MASK, frame.status));
    case "settings": {
      const body = Buffer.allocUnsafe(4 + 8 * frame.settings.length);
      body.writeUInt32BE(frame.settings.length, 0);
      frame.settings.forEach((s, i) => {
        body.writeUInt32BE(((s.flags & 0xff) << 24) | (s.id & 0xffffff), 4 + i * 8);
        body.writeUInt32BE(s.value >>> 0, 8 + i * 8);
      });
      return controlFrame(FrameType.Settings, frame.flags, body);
    }
    case "ping":
      return controlFrame(FrameType.Ping, 0, words(frame.id));
    case "goaway":
      return controlFrame(FrameType.GoAway, 0, words(frame.lastGoodStreamId & STREAM_ID_MASK, frame.status));
    case "window_update":
      return controlFrame(FrameType.WindowUpdate, 0, words(frame.streamId & STREAM_ID_MASK, frame.delta & STREAM_ID_MASK));
    case "unknown":
      return controlFrame(frame.type, frame.flags, frame.payload);
  }
}

function protocolError(message: string): VmpodError {
  return new VmpodError("InvalidArgument", `spdy protocol error: ${message}`);
}

function need(payload: Buffer, bytes: number, what: string): void {
  if (payload.length < bytes) throw protocolError(`${what} frame of ${payload.length} bytes is too short`);
}

function decodeControl(type: number, flags: number, payload: Buffer): Frame {
  switch (type) {
    case FrameType.SynStream:
      need(payload, 10, "SYN_STREAM");
      return {
        kind: "syn_stream",
        streamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        associatedId: payload.readUInt32BE(4) & STREAM_ID_MASK,
        priority: payload.readUInt8(8) >> 5,
        slot: payload.readUInt8(9),
        flags,
        headerBlock: payload.subarray(10),
      };
    case FrameType.SynReply:
      need(payload, 4, "SYN_REPLY");
      return { kind: "syn_reply", streamId: payload.readUInt32BE(0) & STREAM_ID_MASK, flags, headerBlock: payload.subarray(4) };
    case FrameType.Headers:
      need(payload, 4, "HEADERS");
      return { kind: "headers", streamId: payload.readUInt32BE(0) & STREAM_ID_MASK, flags, headerBlock: payload.subarray(4) };
    case FrameType.RstStream:
      need(payload, 8, "RST_STREAM");
      return { kind: "rst_stream", streamId: payload.readUInt32BE(0) & STREAM_ID_MASK, status: payload.readUInt32BE(4) };
    case FrameType.Settings: {
      need(payload, 4, "SETTINGS");
      const count = payload.readUInt32BE(0);
      if (payload.length !== 4 + count * 8) throw protocolError(`SETTINGS frame says ${count} entries in ${payload.length} bytes`);
      const settings: Setting[] = [];
      for (let i = 0; i < count; i++) {
        const idFlags = payload.readUInt32BE(4 + i * 8);
        settings.push({ flags: idFlags >>> 24, id: idFlags & 0xffffff, value: payload.readUInt32BE(8 + i * 8) });
      }
      return { kind: "settings", flags, settings };
    }
    case FrameType.Ping:
      need(payload, 4, "PING");
      return { kind: "ping", id: payload.readUInt32BE(0) };
    case FrameType.GoAway:
      need(payload, 4, "GOAWAY");
      // SPDY/2 peers send no status; SPDY/3 ones do.
      return {
        kind: "goaway",
        lastGoodStreamId: payload.readUInt32BE(0) & STREAM_ID_MASK,
        status: payload.length >= 8 ? payload.readUInt32BE(4) : GoAwayStatus.Ok,
      };
    case FrameType.WindowUpdate:
      need(payload, 8, "WINDOW_UPDATE");
      return { kind: "window_update", streamId: payload.readUInt32BE(0) & STREAM_ID_MASK, delta: payload.readUInt32BE(4) & STREAM_ID_MASK };
    default:
      return { kind: "unknown", type, flags, payload };
  }
}

/**
 * Cuts a byte stream into frames. `push` bytes as they come, then `next()`
 * until it returns undefined. A frame larger than `maxPayload` or of another
 * SPDY version is a protocol error (thrown).
 */
export class FrameParser {
  private buffered: Buffer[] = [];
  private length = 0;

  constructor(private readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.buffered.push(chunk);
    this.length += chunk.length;
  }

  /** Bytes received and not yet returned as frames. */
  get pending(): number {
    return this.length;
  }

  next(): Frame | undefined {
    if (this.length < 8) return undefined;
    const head = this.peek(8);
    const first = head.readUInt32BE(0);
    const flagsLength = head.readUInt32BE(4);
    const flags = flagsLength >>> 24;
    const payloadLength = flagsLength & 0xffffff;
    if (payloadLength > this.maxPayload) throw protocolError(`frame of ${payloadLength} bytes exceeds ${this.maxPayload}`);
    if (this.length < 8 + payloadLength) return undefined;
    const whole = this.take(8 + payloadLength);
    const payload = whole.subarray(8);
    if ((first & 0x80000000) === 0) return { kind: "data", streamId: first & STREAM_ID_MASK, flags, data: payload };
    const version = (first >>> 16) & 0x7fff;
    if (version !== SPDY_VERSION) throw protocolError(`version ${version} frame, expected ${SPDY_VERSION}`);
    return decodeControl(first & 0xffff, flags, payload);
  }

  private peek(bytes: number): Buffer {
    if (this.buffered.length > 1 && (this.buffered[0]?.length ?? 0) < bytes) this.buffered = [Buffer.concat(this.buffered)];
    return this.buffered[0]!.subarray(0, bytes);
  }

  private take(bytes: number): Buffer {
    if ((this.buffered[0]?.length ?? 0) < bytes) this.buffered = [Buffer.concat(this.buffered)];
    const first = this.buffered[0]!;
    const out = first.subarray(0, bytes);
    if (first.length === bytes) this.buffered.shift();
    else this.buffered[0] = first.subarray(bytes);
    this.length -= bytes;
    return out;
  }
}
