/**
 * A CRI client over grpc-js, from the same descriptors as the server: one
 * method per RPC by its local name, unary ones returning a promise of the
 * response, server-streaming ones an async iterable of responses. Failures
 * reject with grpc-js's ServiceError (its `code` is the status code). For
 * `vmpod` client commands, tests and e2e.
 */
import * as grpc from "@grpc/grpc-js";
import { create, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { ImageService, RuntimeService } from "../gen/cri/api_pb.js";
import type { ImageMethods, RuntimeMethods } from "./deps.js";
import { methodPath, serviceDefinition } from "./grpc.js";

export interface CriCallOptions {
  readonly signal?: AbortSignal;
  /** A deadline for the call, from now. */
  readonly timeoutMs?: number;
}

type MethodShape = GenServiceMethods[string];

export type UnaryCall<M extends MethodShape> = (request?: MessageInitShape<M["input"]>, options?: CriCallOptions) => Promise<MessageShape<M["output"]>>;
export type StreamCall<M extends MethodShape> = (request?: MessageInitShape<M["input"]>, options?: CriCallOptions) => AsyncIterable<MessageShape<M["output"]>>;

export type ServiceClient<T extends GenServiceMethods> = {
  [K in keyof T]: T[K]["methodKind"] extends "server_streaming" ? StreamCall<T[K]> : UnaryCall<T[K]>;
};

export interface CriClient {
  readonly runtime: ServiceClient<RuntimeMethods>;
  readonly images: ServiceClient<ImageMethods>;
  /** Resolves once connected, or rejects after `timeoutMs`. */
  waitForReady(timeoutMs: number): Promise<void>;
  close(): void;
}

/** "unix:/run/vmpod/vmpod.sock" for a path; addresses with a scheme are kept. */
export function criAddress(endpoint: string): string {
  return endpoint.startsWith("/") ? `unix:${endpoint}` : endpoint;
}

function callOptions(options: CriCallOptions | undefined): grpc.CallOptions {
  return options?.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs };
}

function unaryCall(client: grpc.Client, method: DescMethod, def: grpc.MethodDefinition<unknown, unknown>): UnaryCall<MethodShape> {
  return (request, options) =>
    new Promise((resolve, reject) => {
      options?.signal?.throwIfAborted();
      const message = create(method.input, request ?? {});
      const call = client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, message, new grpc.Metadata(), callOptions(options), (err, response) => {
        options?.signal?.removeEventListener("abort", cancel);
        if (err) reject(err);
        else resolve(response as never);
      });
      const cancel = () => call.cancel();
      options?.signal?.addEventListener("abort", cancel, { once: true });
    });
}

function streamCall(client: grpc.Client, method: DescMethod, def: grpc.MethodDefinition<unknown, unknown>): StreamCall<MethodShape> {
  return (request, options) => ({
    async *[Symbol.asyncIterator]() {
      options?.signal?.throwIfAborted();
      const message = create(method.input, request ?? {});
      const call = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, message, new grpc.Metadata(), callOptions(options));
      const cancel = () => call.cancel();
      options?.signal?.addEventListener("abort", cancel, { once: true });
      let finished = false;
      try {
        for await (const response of call) yield response as never;
        finished = true;
      } finally {
        options?.signal?.removeEventListener("abort", cancel);
        if (!finished) call.cancel();
      }
    },
  });
}

function serviceClient<T extends GenServiceMethods>(client: grpc.Client, service: GenService<T>): ServiceClient<T> {
  const definition = serviceDefinition(service as DescService);
  const methods: Record<string, unknown> = {};
  for (const method of service.methods) {
    const def = definition[method.localName] as grpc.MethodDefinition<unknown, unknown>;
    if (def.path !== methodPath(method)) throw new Error(`inconsistent definition for ${method.name}`);
    methods[method.localName] = method.methodKind === "server_streaming" ? streamCall(client, method, def) : unaryCall(client, method, def);
  }
  return methods as ServiceClient<T>;
}

/** A client of both CRI services at `endpoint` (a socket path or a gRPC address). */
export function createCriClient(endpoint: string, options: { readonly maxMessageBytes?: number } = {}): CriClient {
  const max = options.maxMessageBytes ?? 16 * 1024 * 1024;
  const client = new grpc.Client(criAddress(endpoint), grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": max, "grpc.max_send_message_length": max });
  return {
    runtime: serviceClient(client, RuntimeService),
    images: serviceClient(client, ImageService),
    waitForReady: (timeoutMs) => new Promise((resolve, reject) => client.waitForReady(Date.now() + timeoutMs, (err) => (err ? reject(err) : resolve()))),
    close: () => client.close(),
  };
}
