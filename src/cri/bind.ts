/** Handlers written as `(deps, request, context)` bound to their dependencies, one per method. */
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { CriDeps, Streaming, Unary } from "./deps.js";
import type { ServiceHandlers } from "./grpc.js";

export type DepsHandlers<T extends GenServiceMethods> = {
  [K in keyof T]: T[K]["methodKind"] extends "server_streaming" ? Streaming<T[K]> : Unary<T[K]>;
};

export function bindHandlers<T extends GenServiceMethods>(deps: CriDeps, handlers: DepsHandlers<T>): ServiceHandlers<T> {
  const bound: Record<string, unknown> = {};
  for (const [name, handler] of Object.entries(handlers) as [string, (d: CriDeps, r: unknown, c: unknown) => unknown][]) {
    bound[name] = (request: unknown, context: unknown) => handler(deps, request, context);
  }
  return bound as ServiceHandlers<T>;
}
