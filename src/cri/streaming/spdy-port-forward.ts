/**
 * Port forwarding over SPDY (`portforward.k8s.io`): for every connection
 * it forwards, the client opens a pair of streams sharing a `requestid`,
 * one `streamtype: error` and one `streamtype: data`, naming the `port`.
 * The data stream is spliced to that port in the pod; a failure is written
 * as text on the error stream. The session lasts until the client leaves.
 */
import type { Logger } from "../../common/log.js";
import type { Runtime } from "../../sandbox/runtime.js";
import { connectPort, forwardError, parsePort, splice } from "./port-forward.js";
import type { SpdySession } from "./spdy-session.js";
import type { SpdyStream } from "./spdy-stream.js";
import type { PortForwardRequest } from "./types.js";

export const SPDY_PORT_FORWARD_PROTOCOL = "portforward.k8s.io";

export interface SpdyPortForwardOptions {
  readonly runtime: Runtime;
  readonly logger: Logger;
  /** How long the second stream of a pair may lag behind the first. */
  readonly pairTimeoutMs: number;
}

interface Pair {
  error?: SpdyStream;
  data?: SpdyStream;
  readonly timer: NodeJS.Timeout;
}

export async function serveSpdyPortForward(session: SpdySession, request: PortForwardRequest, options: SpdyPortForwardOptions): Promise<void> {
  const pairs = new Map<string, Pair>();
  const onStream = (stream: SpdyStream) => {
    const type = stream.header("streamtype");
    const id = stream.header("requestid");
    if ((type !== "error" && type !== "data") || id === "") {
      options.logger.debug("unexpected port forward stream", { type, id: stream.id });
      stream.destroy();
      return;
    }
    let pair = pairs.get(id);
    if (!pair) {
      const timer = setTimeout(() => {
        pairs.delete(id);
        options.logger.info("port forward stream pair incomplete", { requestId: id });
        pair?.error?.destroy();
        pair?.data?.destroy();
      }, options.pairTimeoutMs);
      pair = { timer };
      pairs.set(id, pair);
    }
    if (pair[type]) {
      stream.destroy();
      return;
    }
    pair[type] = stream;
    if (pair.error && pair.data) {
      clearTimeout(pair.timer);
      pairs.delete(id);
      void forward(pair.error, pair.data, request, options);
    }
  };
  session.on("stream", onStream);
  await session.closed;
  session.off("stream", onStream);
  for (const pair of pairs.values()) clearTimeout(pair.timer);
  pairs.clear();
}

async function forward(error: SpdyStream, data: SpdyStream, request: PortForwardRequest, options: SpdyPortForwardOptions): Promise<void> {
  error.resume();
  const port = parsePort(data.header("port"));
  if (port === undefined) {
    error.end(`invalid port ${JSON.stringify(data.header("port"))}`);
    data.end();
    return;
  }
  let conn;
  try {
    conn = await connectPort(options.runtime, request, port);
  } catch (err) {
    options.logger.info("port forward failed", { port, err });
    if (!error.destroyed) error.end(forwardError(request, port, err));
    data.resume();
    if (!data.destroyed) data.end();
    return;
  }
  if (data.destroyed) {
    conn.destroy();
    return;
  }
  await splice(data, conn, (err) => {
    if (!error.destroyed && !error.writableEnded) error.write(forwardError(request, port, err));
  });
  if (!error.destroyed && !error.writableEnded) error.end();
}
