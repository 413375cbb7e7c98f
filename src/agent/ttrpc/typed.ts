/**
 * Typed calls and handlers over the raw ttRPC client and server, from the
 * service descriptors generated from api/agent.proto.
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { CallOptions, TtrpcClient } from "./client.js";
import type { CallContext, TtrpcServer } from "./server.js";

export interface UnaryMethod<I extends DescMessage, O extends DescMessage> {
  readonly name: string;
  readonly parent: { readonly typeName: string };
  readonly input: I;
  readonly output: O;
}

export async function unary<I extends DescMessage, O extends DescMessage>(
  client: TtrpcClient,
  method: UnaryMethod<I, O>,
  request: MessageInitShape<I>,
  options?: CallOptions,
): Promise<MessageShape<O>> {
  const payload = toBinary(method.input, create(method.input, request));
  const answer = await client.call(method.parent.typeName, method.name, payload, options);
  return fromBinary(method.output, answer);
}

/** The handlers of a service: one async function per RPC, by its local (camelCase) name. */
export type ServiceImpl<S extends GenServiceMethods> = {
  [K in keyof S]: (
    request: MessageShape<S[K]["input"]>,
    ctx: CallContext,
  ) => Promise<MessageInitShape<S[K]["output"]>>;
};

export function registerService<S extends GenServiceMethods>(
  server: TtrpcServer,
  service: GenService<S>,
  impl: Partial<ServiceImpl<S>>,
): void {
  for (const method of service.methods) {
    const handler = (impl as Record<string, ((req: unknown, ctx: CallContext) => Promise<unknown>) | undefined>)[method.localName];
    if (!handler) continue;
    server.register(service.typeName, method.name, async (payload, ctx) => {
      const request = fromBinary(method.input, payload);
      const response = await handler.call(impl, request, ctx);
      return toBinary(method.output, create(method.output, response as MessageInitShape<DescMessage>));
    });
  }
}
