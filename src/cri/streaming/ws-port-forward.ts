/**
 * Port forwarding over WebSocket: the ports come from the `port` query
 * parameters (or the request's own list); port i gets data channel 2i and
 * error channel 2i+1, and the first message on each is the port number,
 * two bytes little-endian. Each port is one connection into the pod; the
 * WebSocket closes once every connection has ended.
 */
import type { Logger } from "../../common/log.js";
import type { Runtime } from "../../sandbox/runtime.js";
import { connectPort, forwardError, splice } from "./port-forward.js";
import type { ChannelSocket } from "./ws-channels.js";
import type { PortForwardRequest } from "./types.js";
import { Duplex } from "node:stream";

export const WS_PORT_FORWARD_PROTOCOLS = [
  "v4.channel.k8s.io",
  "portforward.k8s.io",
  "v4.base64.channel.k8s.io",
  "channel.k8s.io",
  "base64.channel.k8s.io",
] as const;

export async function serveWsPortForward(
  socket: ChannelSocket,
  ports: readonly number[],
  request: PortForwardRequest,
  options: { readonly runtime: Runtime; readonly logger: Logger },
): Promise<void> {
  await Promise.all(ports.map((port, i) => forwardOne(socket, port, i, request, options)));
  socket.close();
  await socket.closed;
}

async function forwardOne(
  socket: ChannelSocket,
  port: number,
  index: number,
  request: PortForwardRequest,
  options: { readonly runtime: Runtime; readonly logger: Logger },
): Promise<void> {
  const prefix = Buffer.alloc(2);
  prefix.writeUInt16LE(port);
  const input = socket.input(2 * index);
  const output = socket.output(2 * index);
  const error = socket.output(2 * index + 1);
  output.on("error", () => undefined);
  error.on("error", () => undefined);
  output.write(prefix);
  error.write(prefix);
  let conn: Duplex;
  try {
    conn = await connectPort(options.runtime, request, port);
  } catch (err) {
    options.logger.info("port forward failed", { port, err });
    error.end(forwardError(request, port, err));
    input.resume();
    output.end();
    return;
  }
  const client = Duplex.from({ readable: input, writable: output });
  await splice(client, conn, (err) => {
    if (!error.writableEnded) error.write(forwardError(request, port, err));
  });
  if (!error.writableEnded) error.end();
}
