/**
 * The daemon's HTTP endpoint for operators: `/metrics` in Prometheus's
 * text format and `/healthz`, 200 once the CRI server is ready and 503
 * before (and while it shuts down). Anything else is 404.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Registry } from "prom-client";
import { VmpodError, messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";

export interface MetricsServerOptions {
  /** "host:port"; port 0 takes any free port (`start` says which). */
  readonly address: string;
  readonly registry: Registry;
  /** Whether the CRI server is ready. */
  readonly ready: () => boolean;
  readonly logger: Logger;
}

/** "host:port" split; the host may be a name, an IPv4 address, or an IPv6 one in brackets. */
export function parseListenAddress(address: string): { host: string; port: number } {
  const colon = address.lastIndexOf(":");
  const host = address.slice(0, colon).replace(/^\[(.*)\]$/, "$1");
  const port = Number(address.slice(colon + 1));
  if (colon <= 0 || host === "" || !Number.isInteger(port) || port < 0 || port > 65535 || address.slice(colon + 1) === "") {
    throw new VmpodError("InvalidArgument", `metrics address ${JSON.stringify(address)} is not host:port`);
  }
  return { host, port };
}

export class MetricsServer {
  private readonly server: Server;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: MetricsServerOptions) {
    this.server = createServer((req, res) => {
      this.answer(req, res).catch((err: unknown) => {
        options.logger.warn("metrics request failed", { path: req.url, err: messageOf(err) });
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain; charset=utf-8" });
        res.end("internal error\n");
      });
    });
  }

  /** Listens; resolves with the address bound ("127.0.0.1:8090"). */
  async start(): Promise<string> {
    const { host, port } = parseListenAddress(this.options.address);
    await new Promise<void>((resolve, reject) => {
      const failed = (err: Error) => reject(new VmpodError("Unavailable", `metrics: listen on ${this.options.address}`, { cause: err }));
      this.server.once("error", failed);
      this.server.listen(port, host, () => {
        this.server.off("error", failed);
        resolve();
      });
    });
    const bound = this.server.address() as AddressInfo;
    return bound.family === "IPv6" ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  }

  /** Stops listening and drops open connections. Idempotent. */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? "/", "http://metrics").pathname;
    if (req.method !== "GET" && req.method !== "HEAD") return reply(res, 405, "text/plain; charset=utf-8", "method not allowed\n", { allow: "GET, HEAD" });
    switch (path) {
      case "/metrics":
        return reply(res, 200, this.options.registry.contentType, await this.options.registry.metrics());
      case "/healthz":
        return this.options.ready() ? reply(res, 200, "text/plain; charset=utf-8", "ok\n") : reply(res, 503, "text/plain; charset=utf-8", "the CRI server is not ready\n");
      default:
        return reply(res, 404, "text/plain; charset=utf-8", "not found: try /metrics or /healthz\n");
    }
  }
}

function reply(res: ServerResponse, status: number, contentType: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body), ...headers });
  res.end(res.req.method === "HEAD" ? undefined : body);
}
