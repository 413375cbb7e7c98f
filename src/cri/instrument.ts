/**
 * The one wrapper every CRI handler goes through: a readiness gate (until
 * the runtime is ready only the calls that report on it are answered, the
 * rest fail with UNAVAILABLE), one log line per call with its method,
 * duration, status code and the pod and container it concerns (debug for
 * the calls kubelet polls), the same facts told to an observer (the
 * daemon's metrics), and the error mapping of errors.ts.
 */
import type { DescMethod } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { status as Code } from "@grpc/grpc-js";
import { VmpodError, messageOf } from "../common/errors.js";
import type { Fields, Logger } from "../common/log.js";
import { codeName, toGrpcStatus } from "./errors.js";
import type { AnyHandler, CallContext, ServiceHandlers } from "./grpc.js";

/** Told of every call as it ends (the daemon's metrics). */
export interface CallObserver {
  /**
   * `method` is the RPC's name ("RunPodSandbox"), `code` the gRPC status
   * code's name ("OK", "NOT_FOUND"), `seconds` the time from the request to
   * the status (for a stream, its whole life).
   */
  callEnded(method: string, code: string, seconds: number): void;
}

export interface InstrumentOptions {
  readonly logger: Logger;
  /** Whether the runtime is ready for every call. */
  readonly ready: () => boolean;
  readonly observer?: CallObserver;
}

/** Calls answered before the runtime is ready: they only describe it. */
const ALWAYS_ANSWERED = new Set(["Version", "Status", "RuntimeConfig"]);

/** Calls kubelet makes every few seconds: logged at debug level. */
export function isPolled(method: string): boolean {
  return method === "Version" || method === "ImageFsInfo" || method.startsWith("List") || method.startsWith("Stream") || method.endsWith("Status") || method.endsWith("Stats");
}

/** The ids a request names, or a response gives (a new pod's or container's), for the log line. */
function idFields(message: unknown): Fields {
  const fields: Fields = {};
  if (message === null || typeof message !== "object") return fields;
  const r = message as { podSandboxId?: unknown; containerId?: unknown };
  if (typeof r.podSandboxId === "string" && r.podSandboxId !== "") fields.pod = r.podSandboxId;
  if (typeof r.containerId === "string" && r.containerId !== "") fields.container = r.containerId;
  return fields;
}

class CallLog {
  private readonly start = performance.now();
  private done = false;

  constructor(
    private readonly logger: Logger,
    private readonly method: string,
    private readonly fields: Fields,
    private readonly observer: CallObserver | undefined,
  ) {}

  ok(extra: Fields = {}): void {
    this.finish(Code.OK, extra);
  }

  failed(err: unknown, signal: AbortSignal): void {
    // A client that went away sees no status; say what happened on our side.
    const code = signal.aborted ? Code.CANCELLED : toGrpcStatus(err).code;
    this.finish(code, { err: messageOf(err) });
  }

  cancelled(extra: Fields = {}): void {
    this.finish(Code.CANCELLED, extra);
  }

  private finish(code: Code, extra: Fields): void {
    if (this.done) return;
    this.done = true;
    const ms = performance.now() - this.start;
    this.observer?.callEnded(this.method, codeName(code), ms / 1000);
    const fields = { method: this.method, code: codeName(code), durationMs: Math.round(ms * 10) / 10, ...this.fields, ...extra };
    const polled = isPolled(this.method);
    if (code === Code.OK || code === Code.CANCELLED) (polled ? this.logger.debug : this.logger.info).call(this.logger, "cri call", fields);
    else if (code === Code.INTERNAL || code === Code.UNKNOWN) this.logger.error("cri call", fields);
    else if (polled && code === Code.NOT_FOUND) this.logger.debug("cri call", fields);
    else this.logger.warn("cri call", fields);
  }
}

function gate(method: DescMethod, ready: () => boolean): void {
  if (!ALWAYS_ANSWERED.has(method.name) && !ready()) throw new VmpodError("Unavailable", `the runtime is not ready yet (${method.name})`);
}

function unary(method: DescMethod, handler: AnyHandler, options: InstrumentOptions): AnyHandler {
  const call = handler as (request: unknown, context: CallContext) => Promise<unknown>;
  return async (request: unknown, context: CallContext) => {
    const log = new CallLog(options.logger, method.name, idFields(request), options.observer);
    try {
      gate(method, options.ready);
      const response = await call(request, context);
      log.ok(idFields(response));
      return response;
    } catch (err) {
      log.failed(err, context.signal);
      throw err;
    }
  };
}

function stream(method: DescMethod, handler: AnyHandler, options: InstrumentOptions): AnyHandler {
  const call = handler as (request: unknown, context: CallContext) => AsyncIterable<unknown>;
  return async function* (request: unknown, context: CallContext) {
    const log = new CallLog(options.logger, method.name, idFields(request), options.observer);
    let sent = 0;
    try {
      gate(method, options.ready);
      for await (const item of call(request, context)) {
        sent += 1;
        yield item;
      }
      if (context.signal.aborted) log.cancelled({ sent });
      else log.ok({ sent });
    } catch (err) {
      log.failed(err, context.signal);
      throw err;
    } finally {
      // The consumer stopped early: the client cancelled.
      log.cancelled({ sent });
    }
  };
}

/** `handlers` with the gate, the log line and the error mapping around each. */
export function instrument<T extends GenServiceMethods>(service: GenService<T>, handlers: ServiceHandlers<T>, options: InstrumentOptions): ServiceHandlers<T> {
  const byName = handlers as unknown as Record<string, AnyHandler>;
  const wrapped: Record<string, AnyHandler> = {};
  for (const method of service.methods) {
    const handler = byName[method.localName];
    if (handler === undefined) throw new Error(`${method.parent.typeName}.${method.name} has no handler`);
    wrapped[method.localName] = method.methodKind === "server_streaming" ? stream(method, handler, options) : unary(method, handler, options);
  }
  return wrapped as unknown as ServiceHandlers<T>;
}
