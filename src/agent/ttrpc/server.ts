/**
 * A ttRPC server over one byte stream: the agent's side of the channel.
 * Requests are handled concurrently; each handler gets an abort signal that
 * fires at the caller's deadline or when the connection ends.
 */
import type { Duplex } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { RequestSchema, ResponseSchema } from "../../gen/ttrpc_pb.js";
import { kindOf, messageOf } from "../../common/errors.js";
import { encodeFrame, FrameDecoder, MessageType } from "./frame.js";
import { Code, codeOfKind } from "../../common/status-codes.js";

export interface CallContext {
  readonly signal: AbortSignal;
  readonly method: string;
}

export type Handler = (payload: Uint8Array, ctx: CallContext) => Promise<Uint8Array>;

export interface ServerEvents {
  /** A handler threw; for logging. */
  onError?(method: string, err: unknown): void;
}

export class TtrpcServer {
  private readonly handlers = new Map<string, Handler>();

  constructor(private readonly events: ServerEvents = {}) {}

  register(service: string, method: string, handler: Handler): void {
    this.handlers.set(`${service}/${method}`, handler);
  }

  /** Serves requests on `stream` until it ends; resolves then. */
  serve(stream: Duplex): Promise<void> {
    return new Promise((resolve) => {
      const decoder = new FrameDecoder();
      const inflight = new Set<AbortController>();
      let ended = false;
      const end = () => {
        if (ended) return;
        ended = true;
        for (const controller of inflight) controller.abort();
        resolve();
      };
      stream.on("data", (chunk: Buffer) => {
        let frames;
        try {
          frames = decoder.push(chunk);
        } catch (err) {
          this.events.onError?.("(framing)", err);
          stream.destroy();
          return;
        }
        for (const frame of frames) {
          if (frame.type !== MessageType.Request) continue;
          void this.dispatch(stream, frame.streamId, frame.payload, inflight, () => ended);
        }
      });
      stream.on("error", end);
      stream.on("close", end);
      stream.on("end", end);
    });
  }

  private async dispatch(
    stream: Duplex,
    streamId: number,
    payload: Uint8Array,
    inflight: Set<AbortController>,
    isEnded: () => boolean,
  ): Promise<void> {
    const controller = new AbortController();
    inflight.add(controller);
    let timer: NodeJS.Timeout | undefined;
    let code: number = Code.OK;
    let message = "";
    let result: Uint8Array = new Uint8Array();
    let method = "(undecodable)";
    try {
      const request = fromBinary(RequestSchema, payload);
      method = `${request.service}/${request.method}`;
      const handler = this.handlers.get(method);
      if (!handler) {
        code = Code.UNIMPLEMENTED;
        message = `${method} is not implemented`;
      } else {
        if (request.timeoutNano > 0n) {
          const ms = Number(request.timeoutNano / 1_000_000n);
          timer = setTimeout(() => controller.abort(), ms);
        }
        result = await handler(request.payload, { signal: controller.signal, method });
      }
    } catch (err) {
      const kind = kindOf(err);
      code = kind ? codeOfKind(kind) : Code.INTERNAL;
      message = messageOf(err);
      if (!kind) this.events.onError?.(method, err);
    } finally {
      if (timer) clearTimeout(timer);
      inflight.delete(controller);
    }
    if (isEnded()) return;
    const response = create(ResponseSchema, {
      payload: code === Code.OK ? result : new Uint8Array(),
      ...(code === Code.OK ? {} : { status: { code, message } }),
    });
    stream.write(encodeFrame({ streamId, type: MessageType.Response, flags: 0, payload: toBinary(ResponseSchema, response) }));
  }
}
