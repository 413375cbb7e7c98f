/**
 * A ttRPC client over any byte stream (a unix socket to QEMU's virtio-serial
 * chardev today). Calls are multiplexed on one stream, each on its own odd
 * stream id, and each may carry a deadline and an abort signal.
 */
import type { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema } from "../../gen/ttrpc_pb.js";
import { VmpodError, messageOf } from "../../common/errors.js";
import { encodeFrame, FrameDecoder, MessageType } from "./frame.js";
import { kindOfCode } from "../../common/status-codes.js";

export interface CallOptions {
  readonly signal?: AbortSignal;
  /** Milliseconds; also sent to the server as the call's timeout. */
  readonly timeoutMs?: number;
}

interface Pending {
  readonly method: string;
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
}

const MAX_STREAM_ID = 0x7fffffff;

export class TtrpcClient {
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder();
  private nextStreamId = 1;
  private failure: Error | undefined;
  private readonly ended: Promise<void>;
  private markEnded!: () => void;

  constructor(private readonly stream: Duplex) {
    this.ended = new Promise((resolve) => (this.markEnded = resolve));
    stream.on("data", (chunk: Buffer) => this.onData(chunk));
    stream.on("error", (err) => this.fail(new VmpodError("Unavailable", "agent connection failed", { cause: err })));
    stream.on("close", () => this.fail(new VmpodError("Unavailable", "agent connection closed")));
    stream.on("end", () => this.fail(new VmpodError("Unavailable", "agent connection closed by the guest")));
  }

  /** True once the connection has ended, for whatever reason. */
  get isClosed(): boolean {
    return this.failure !== undefined;
  }

  /** Resolves when the connection has ended. */
  get done(): Promise<void> {
    return this.ended;
  }

  call(service: string, method: string, payload: Uint8Array, options: CallOptions = {}): Promise<Uint8Array> {
    const name = `${service}/${method}`;
    if (this.failure) return Promise.reject(this.failure);
    if (options.signal?.aborted) return Promise.reject(new VmpodError("Canceled", `${name}: canceled`));
    const streamId = this.allocateStreamId();
    const request = create(RequestSchema, {
      service,
      method,
      payload,
      timeoutNano: options.timeoutMs === undefined ? 0n : BigInt(Math.round(options.timeoutMs * 1e6)),
    });
    return new Promise<Uint8Array>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => settle(new VmpodError("Canceled", `${name}: canceled`));
      const settle = (err: Error | undefined, value?: Uint8Array) => {
        if (!this.pending.delete(streamId)) return;
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(value as Uint8Array);
      };
      this.pending.set(streamId, {
        method: name,
        resolve: (value) => settle(undefined, value),
        reject: (err) => settle(err),
      });
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(
          () => settle(new VmpodError("DeadlineExceeded", `${name}: no answer within ${options.timeoutMs} ms`)),
          options.timeoutMs,
        );
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });
      try {
        this.stream.write(encodeFrame({ streamId, type: MessageType.Request, flags: 0, payload: toBinary(RequestSchema, request) }));
      } catch (err) {
        settle(err instanceof VmpodError ? err : new VmpodError("Unavailable", `${name}: write`, { cause: err }));
      }
    });
  }

  /** Ends the connection; pending calls fail with Unavailable. Idempotent. */
  close(): void {
    this.destroy(new VmpodError("Unavailable", "agent connection closed"));
  }

  /** Ends the connection, failing pending calls with `reason`. Idempotent. */
  destroy(reason: Error): void {
    this.fail(reason);
    this.stream.destroy();
  }

  private allocateStreamId(): number {
    const id = this.nextStreamId;
    this.nextStreamId = id + 2 > MAX_STREAM_ID ? 1 : id + 2;
    return id;
  }

  private onData(chunk: Buffer): void {
    let frames;
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      this.destroy(new VmpodError("Internal", `agent sent a bad frame: ${messageOf(err)}`));
      return;
    }
    for (const frame of frames) {
      if (frame.type !== MessageType.Response) continue;
      const pending = this.pending.get(frame.streamId);
      if (!pending) continue; // answer to a call that already timed out
      let response;
      try {
        response = fromBinary(ResponseSchema, frame.payload);
      } catch (err) {
        pending.reject(new VmpodError("Internal", `${pending.method}: undecodable response`, { cause: err }));
        continue;
      }
      const status = response.status;
      if (status && status.code !== 0) {
        pending.reject(new VmpodError(kindOfCode(status.code), status.message || `${pending.method} failed with code ${status.code}`));
      } else {
        pending.resolve(response.payload);
      }
    }
  }

  private fail(err: Error): void {
    if (!this.failure) {
      this.failure = err;
      this.markEnded();
    }
    for (const pending of [...this.pending.values()]) pending.reject(this.failure);
  }
}
