/**
 * gRPC plumbing from protobuf-es descriptors: grpc-js wants a
 * ServiceDefinition (paths, serializers, which side streams); the generated
 * service descriptors already say all of it. Handlers here take and return
 * protobuf-es messages: a unary handler returns a promise, a
 * server-streaming handler an async iterable; whatever they throw is sent
 * as the status `toGrpcStatus` gives it.
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { toGrpcStatus } from "./errors.js";

/** What a handler knows of its call besides the request. */
export interface CallContext {
  /** "runtime.v1.RuntimeService/Version". */
  readonly method: string;
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal: AbortSignal;
}

type MethodShape = GenServiceMethods[string];

export type UnaryHandler<M extends MethodShape> = (request: MessageShape<M["input"]>, context: CallContext) => Promise<MessageInitShape<M["output"]>>;
export type StreamHandler<M extends MethodShape> = (request: MessageShape<M["input"]>, context: CallContext) => AsyncIterable<MessageInitShape<M["output"]>>;

export type Handler<M extends MethodShape> = M["methodKind"] extends "server_streaming" ? StreamHandler<M> : UnaryHandler<M>;

/** One handler for every method of a service, by its local name (`version`, `runPodSandbox`). */
export type ServiceHandlers<T extends GenServiceMethods> = { [K in keyof T]: Handler<T[K]> };

/** A handler of any method, for code that wraps handlers without knowing which. */
export type AnyHandler = (request: never, context: CallContext) => Promise<unknown> | AsyncIterable<unknown>;

/** The gRPC path of a method: "/runtime.v1.RuntimeService/Version". */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

function serializer<D extends DescMessage>(schema: D): (value: MessageShape<D>) => Buffer {
  return (value) => Buffer.from(toBinary(schema, value));
}

function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes);
}

/** grpc-js's definition of a service, keyed by the methods' local names. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const method of service.methods) {
    if (method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming") {
      throw new Error(`${method.parent.typeName}.${method.name}: client streaming is not supported`);
    }
    definition[method.localName] = {
      path: methodPath(method),
      requestStream: false,
      responseStream: method.methodKind === "server_streaming",
      originalName: method.name,
      requestSerialize: serializer(method.input) as (value: unknown) => Buffer,
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output) as (value: unknown) => Buffer,
      responseDeserialize: deserializer(method.output),
    };
  }
  return definition;
}

function contextOf(method: DescMethod, call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): CallContext {
  const controller = new AbortController();
  const abort = () => controller.abort(new DOMException("the client cancelled the call", "AbortError"));
  if (call.cancelled) abort();
  else call.once("cancelled", abort);
  return { method: `${method.parent.typeName}/${method.name}`, signal: controller.signal };
}

function statusObject(err: unknown): Partial<grpc.StatusObject> {
  const status = toGrpcStatus(err);
  return { code: status.code, details: status.details, metadata: new grpc.Metadata() };
}

function unaryImplementation(method: DescMethod, handler: AnyHandler): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const context = contextOf(method, call);
    let result: Promise<unknown>;
    try {
      result = Promise.resolve((handler as (r: unknown, c: CallContext) => Promise<unknown>)(call.request, context));
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (init) => callback(null, create(method.output, init as MessageInitShape<DescMessage>)),
      (err: unknown) => callback(statusObject(err)),
    );
  };
}

function streamImplementation(method: DescMethod, handler: AnyHandler): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const context = contextOf(method, call);
    void (async () => {
      try {
        const items = (handler as (r: unknown, c: CallContext) => AsyncIterable<unknown>)(call.request, context);
        for await (const init of items) {
          if (call.cancelled) return;
          const message = create(method.output, init as MessageInitShape<DescMessage>);
          if (!call.write(message)) await waitDrain(call, context.signal);
        }
        if (!call.cancelled) call.end();
      } catch (err) {
        if (!call.cancelled) call.emit("error", statusObject(err));
      }
    })();
  };
}

function waitDrain(call: grpc.ServerWritableStream<unknown, unknown>, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      call.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    call.once("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** grpc-js's implementation object for `service`, from one handler per method. */
export function serviceImplementation<T extends GenServiceMethods>(service: GenService<T>, handlers: ServiceHandlers<T>): grpc.UntypedServiceImplementation {
  const implementation: grpc.UntypedServiceImplementation = {};
  const byName = handlers as unknown as Record<string, AnyHandler>;
  for (const method of service.methods) {
    const handler = byName[method.localName];
    if (handler === undefined) throw new Error(`${method.parent.typeName}.${method.name} has no handler`);
    implementation[method.localName] = method.methodKind === "server_streaming" ? streamImplementation(method, handler) : unaryImplementation(method, handler);
  }
  return implementation;
}

/** The method shapes of a generated service: `MethodsOf<typeof RuntimeService>`. */
export type MethodsOf<S> = S extends GenService<infer T> ? T : never;
