/**
 * The transport-neutral part of port forwarding: which ports a token
 * allows, connecting to one through the runtime, and splicing that
 * connection to the client's data stream both ways with back-pressure.
 */
import type { Duplex } from "node:stream";
import { VmpodError, messageOf } from "../../common/errors.js";
import type { Runtime } from "../../sandbox/runtime.js";
import type { PortForwardRequest } from "./types.js";

/** A port number from a header or query value; undefined if it is not one. */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

/** Connects to `port` in the pod, checking it against the ports the request named. */
export async function connectPort(runtime: Runtime, request: PortForwardRequest, port: number): Promise<Duplex> {
  if (request.ports.length > 0 && !request.ports.includes(port)) {
    throw new VmpodError("InvalidArgument", `port ${port} was not named in the port forward request (${request.ports.join(", ")})`);
  }
  return runtime.portForward(request.podId, port);
}

export function forwardError(request: PortForwardRequest, port: number, err: unknown): string {
  return `error forwarding port ${port} to pod ${request.podId}: ${messageOf(err)}`;
}

/**
 * Splices the client's data stream and the pod connection: the client's
 * end half-closes the pod connection; the pod connection closing ends the
 * client's stream (what the client still sends is dropped); an error or
 * reset on either side drops both. `onError` hears about a failure of the
 * pod side. Resolves once the pod connection is closed.
 */
export function splice(client: Duplex, pod: Duplex, onError: (err: Error) => void): Promise<void> {
  return new Promise((resolve) => {
    pod.on("error", (err) => {
      onError(err);
      client.destroy();
    });
    client.on("error", () => pod.destroy());
    client.on("close", () => pod.destroy());
    pod.on("close", () => {
      if (!client.writableEnded && !client.destroyed) client.end();
      client.unpipe(pod);
      client.resume();
      resolve();
    });
    client.pipe(pod);
    pod.pipe(client);
  });
}
