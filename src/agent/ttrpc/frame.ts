/**
 * ttRPC framing, as containerd speaks it: a 10-byte header (payload length
 * u32 BE, stream id u32 BE, message type u8, flags u8) and the payload.
 * Clients open requests on odd stream ids.
 */
import { VmpodError } from "../../common/errors.js";

export const HEADER_LENGTH = 10;
/** The largest payload either side accepts (containerd's limit). */
export const MAX_PAYLOAD = 4 << 20;

export const MessageType = {
  Request: 1,
  Response: 2,
  Data: 3,
} as const;

export const Flags = {
  RemoteClosed: 1,
  RemoteOpen: 2,
  NoData: 4,
} as const;

export interface Frame {
  readonly streamId: number;
  readonly type: number;
  readonly flags: number;
  readonly payload: Uint8Array;
}

export function encodeFrame(frame: Frame): Buffer {
  if (frame.payload.length > MAX_PAYLOAD) {
    throw new VmpodError("ResourceExhausted", `ttrpc message of ${frame.payload.length} bytes exceeds the limit of ${MAX_PAYLOAD}`);
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + frame.payload.length);
  out.writeUInt32BE(frame.payload.length, 0);
  out.writeUInt32BE(frame.streamId, 4);
  out.writeUInt8(frame.type, 8);
  out.writeUInt8(frame.flags, 9);
  out.set(frame.payload, HEADER_LENGTH);
  return out;
}

/** Accumulates bytes from a stream and returns whole frames as they complete. */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): Frame[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const frames: Frame[] = [];
    for (;;) {
      if (this.buffered < HEADER_LENGTH) break;
      const head = this.peek(HEADER_LENGTH);
      const length = head.readUInt32BE(0);
      if (length > MAX_PAYLOAD) {
        throw new VmpodError("ResourceExhausted", `ttrpc frame of ${length} bytes exceeds the limit of ${MAX_PAYLOAD}`);
      }
      if (this.buffered < HEADER_LENGTH + length) break;
      const whole = this.take(HEADER_LENGTH + length);
      frames.push({
        streamId: whole.readUInt32BE(4),
        type: whole.readUInt8(8),
        flags: whole.readUInt8(9),
        payload: whole.subarray(HEADER_LENGTH),
      });
    }
    return frames;
  }

  private peek(n: number): Buffer {
    if (this.chunks.length > 1 && (this.chunks[0]?.length ?? 0) < n) {
      this.chunks = [Buffer.concat(this.chunks)];
    }
    return (this.chunks[0] as Buffer).subarray(0, n);
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    const out = Buffer.from(all.subarray(0, n));
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered = rest.length;
    return out;
  }
}
