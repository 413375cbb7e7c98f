/**
 * The streaming server: the HTTP endpoint behind the URLs that Exec, Attach
 * and PortForward return. Each URL carries a one-time token standing for
 * the stored request; the client's upgrade request consumes it and becomes
 * a SPDY/3.1 session (kubectl and crictl up to 1.29, kubelet's proxy) or a
 * WebSocket (the channel protocols, kubectl 1.30 on), served until either
 * side ends it.
 */
import http, { type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { VmpodError, messageOf } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { Runtime } from "../../sandbox/runtime.js";
import { acceptSpdy, headerValues, isSpdyUpgrade, isWebSocketUpgrade, negotiate, rejectUpgrade } from "./handshake.js";
import { parsePort } from "./port-forward.js";
import { SPDY_REMOTE_COMMAND_PROTOCOLS, serveSpdyRemoteCommand, type SpdyRemoteCommandProtocol } from "./spdy-remote-command.js";
import { SPDY_PORT_FORWARD_PROTOCOL, serveSpdyPortForward } from "./spdy-port-forward.js";
import { SpdySession } from "./spdy-session.js";
import { TokenStore, type StreamingRequest } from "./tokens.js";
import type { AttachRequest, ExecRequest, PortForwardRequest, StreamingUrls } from "./types.js";
import { ChannelSocket } from "./ws-channels.js";
import { WS_PORT_FORWARD_PROTOCOLS, serveWsPortForward } from "./ws-port-forward.js";
import { WS_REMOTE_COMMAND_PROTOCOLS, channelEncoding, serveWsRemoteCommand, type WsRemoteCommandProtocol } from "./ws-remote-command.js";

export interface StreamingServerOptions {
  /** `host:port` to listen on, `127.0.0.1:0` for any free port. */
  readonly address: string;
  readonly runtime: Runtime;
  readonly logger: Logger;
  /** How long a URL stays good. */
  readonly tokenTtlMs?: number;
  /** The URL prefix handed to clients, when they reach this server by another address. */
  readonly baseUrl?: string;
  /** How long a SPDY client has to open its streams. */
  readonly streamCreationTimeoutMs?: number;
  /** A connection with no traffic for this long is dropped. */
  readonly idleTimeoutMs?: number;
}

const ROUTES = { exec: "exec", attach: "attach", portforward: "portforward" } as const;

interface Live {
  readonly socket: Duplex;
  readonly task: Promise<void>;
}

export class StreamingServer implements StreamingUrls {
  private readonly server = http.createServer();
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, handleProtocols: (_offered, req) => this.chosen.get(req) || false });
  private readonly chosen = new WeakMap<IncomingMessage, string>();
  private readonly tokens: TokenStore;
  private readonly live = new Set<Live>();
  private readonly logger: Logger;
  private readonly streamCreationTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  private base: string | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly options: StreamingServerOptions) {
    this.logger = options.logger.child({ component: "streaming" });
    this.tokens = new TokenStore({ ttlMs: options.tokenTtlMs ?? 60_000 });
    this.streamCreationTimeoutMs = options.streamCreationTimeoutMs ?? 30_000;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 4 * 60 * 60 * 1000;
    this.server.on("request", (req, res) => {
      const route = parseRoute(req.url);
      const known = route !== undefined && this.tokens.has(route.token);
      res.writeHead(known ? 400 : 404, { "Content-Type": "text/plain; charset=utf-8" });
      res.end(known ? "an upgrade to SPDY/3.1 or WebSocket is required\n" : "not found\n");
    });
    this.server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  /** Listens on the configured address. */
  async start(): Promise<void> {
    const { host, port } = parseAddress(this.options.address);
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, host, () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    const bound = this.server.address() as AddressInfo;
    const urlHost = bound.family === "IPv6" ? `[${wildcardToLoopback(bound.address)}]` : wildcardToLoopback(bound.address);
    this.base = (this.options.baseUrl ?? `http://${urlHost}:${bound.port}`).replace(/\/+$/, "");
    this.logger.info("streaming server listening", { url: this.base });
  }

  /** The URL prefix clients are given. */
  get url(): string {
    if (!this.base) throw new VmpodError("FailedPrecondition", "streaming server is not started");
    return this.base;
  }

  /** Connections being served. */
  get sessionCount(): number {
    return this.live.size;
  }

  execUrl(request: ExecRequest): string {
    if (request.command.length === 0) throw new VmpodError("InvalidArgument", "exec: command is empty");
    if (!request.stdin && !request.stdout && !request.stderr) throw new VmpodError("InvalidArgument", "exec: one of stdin, stdout and stderr must be set");
    return this.issue({ kind: "exec", request: { ...request, command: [...request.command] } });
  }

  attachUrl(request: AttachRequest): string {
    if (!request.stdin && !request.stdout && !request.stderr) throw new VmpodError("InvalidArgument", "attach: one of stdin, stdout and stderr must be set");
    return this.issue({ kind: "attach", request: { ...request } });
  }

  portForwardUrl(request: PortForwardRequest): string {
    for (const port of request.ports) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new VmpodError("InvalidArgument", `port forward: invalid port ${port}`);
    }
    return this.issue({ kind: "portforward", request: { podId: request.podId, ports: [...request.ports] } });
  }

  /** Stops listening and ends every live session. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.tokens.clear();
      const stopped = this.server.listening ? new Promise<void>((resolve) => this.server.close(() => resolve())) : Promise.resolve();
      for (const live of this.live) live.socket.destroy();
      this.server.closeAllConnections();
      this.wss.close();
      await Promise.allSettled([...this.live].map((l) => l.task));
      await stopped;
    })();
    return this.closing;
  }

  private issue(value: StreamingRequest): string {
    const base = this.url;
    if (this.closing) throw new VmpodError("Unavailable", "streaming server is closed");
    return `${base}/${ROUTES[value.kind]}/${this.tokens.issue(value)}`;
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on("error", (err) => this.logger.debug("streaming socket error", { err: messageOf(err) }));
    const route = parseRoute(req.url);
    const entry = route && this.tokens.consume(route.token);
    if (!route || !entry || entry.kind !== route.kind) return rejectUpgrade(socket, 404, "not found (unknown, used or expired streaming URL)");
    if (isWebSocketUpgrade(req)) return this.acceptWebSocket(req, socket, head, entry);
    if (isSpdyUpgrade(req)) return this.acceptSpdy(req, socket, head, entry);
    rejectUpgrade(socket, 400, "unsupported upgrade: expected SPDY/3.1 or websocket");
  }

  private acceptSpdy(req: IncomingMessage, socket: Duplex, head: Buffer, entry: StreamingRequest): void {
    const supported: readonly string[] = entry.kind === "portforward" ? [SPDY_PORT_FORWARD_PROTOCOL] : SPDY_REMOTE_COMMAND_PROTOCOLS;
    const offered = headerValues(req, "x-stream-protocol-version");
    const protocol = negotiate(offered, supported);
    if (protocol === undefined) {
      return rejectUpgrade(socket, 403, `unable to upgrade: unable to negotiate protocol: client supports [${offered.join(" ")}], server accepts [${supported.join(" ")}]`, {
        "X-Accepted-Stream-Protocol-Versions": supported.join(", "),
      });
    }
    acceptSpdy(socket, protocol);
    const log = this.logger.child({ session: entry.kind, transport: "spdy", protocol, ...sessionIds(entry) });
    const session = new SpdySession(socket, { role: "server", logger: log, head });
    const task =
      entry.kind === "portforward"
        ? serveSpdyPortForward(session, entry.request, { runtime: this.options.runtime, logger: log, pairTimeoutMs: this.streamCreationTimeoutMs })
        : serveSpdyRemoteCommand(session, (protocol || "channel.k8s.io") as SpdyRemoteCommandProtocol, entry, {
            runtime: this.options.runtime,
            logger: log,
            streamCreationTimeoutMs: this.streamCreationTimeoutMs,
          });
    this.track(socket, task, log);
  }

  private acceptWebSocket(req: IncomingMessage, socket: Duplex, head: Buffer, entry: StreamingRequest): void {
    const supported: readonly string[] = entry.kind === "portforward" ? WS_PORT_FORWARD_PROTOCOLS : WS_REMOTE_COMMAND_PROTOCOLS;
    const offered = headerValues(req, "sec-websocket-protocol");
    const protocol = negotiate(offered, supported);
    if (protocol === undefined) return rejectUpgrade(socket, 400, `unsupported websocket subprotocols [${offered.join(" ")}], server accepts [${supported.join(" ")}]`);
    let ports: readonly number[] = [];
    if (entry.kind === "portforward") {
      const query = new URL(req.url ?? "/", "http://streaming").searchParams.getAll("port");
      const parsed = query.map(parsePort);
      if (parsed.some((p) => p === undefined)) return rejectUpgrade(socket, 400, `invalid port in [${query.join(" ")}]`);
      ports = parsed.length > 0 ? (parsed as number[]) : entry.request.ports;
      if (ports.length === 0) return rejectUpgrade(socket, 400, "port forward over websocket needs at least one port query parameter");
    }
    this.chosen.set(req, protocol);
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const effective = protocol || "channel.k8s.io";
      const log = this.logger.child({ session: entry.kind, transport: "websocket", protocol: effective, ...sessionIds(entry) });
      const channels = new ChannelSocket(ws, channelEncoding(effective), log, effective.startsWith("v5."));
      const options = { runtime: this.options.runtime, logger: log };
      const task =
        entry.kind === "portforward"
          ? serveWsPortForward(channels, ports, entry.request, options)
          : serveWsRemoteCommand(channels, effective as WsRemoteCommandProtocol, entry, options);
      this.track(socket, task, log);
    });
  }

  private track(socket: Duplex, task: Promise<void>, log: Logger): void {
    if (this.closing) socket.destroy();
    if (this.idleTimeoutMs > 0 && "setTimeout" in socket && typeof socket.setTimeout === "function") {
      (socket as Duplex & { setTimeout(ms: number, cb: () => void): void }).setTimeout(this.idleTimeoutMs, () => {
        log.info("streaming connection idle, dropping it");
        socket.destroy();
      });
    }
    const live: Live = {
      socket,
      task: task.then(
        () => log.debug("streaming session done"),
        (err: unknown) => log.warn("streaming session failed", { err: messageOf(err) }),
      ),
    };
    this.live.add(live);
    void live.task.finally(() => {
      this.live.delete(live);
      if (!socket.destroyed) socket.destroy();
    });
  }
}

function parseRoute(url: string | undefined): { kind: StreamingRequest["kind"]; token: string } | undefined {
  const match = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)\/?(?:\?.*)?$/.exec(url ?? "");
  if (!match) return undefined;
  return { kind: match[1] as StreamingRequest["kind"], token: match[2]! };
}

function parseAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(address);
  if (!match) throw new VmpodError("InvalidArgument", `streaming address ${JSON.stringify(address)} is not host:port`);
  const port = Number(match[3]);
  if (port > 65535) throw new VmpodError("InvalidArgument", `streaming address ${address}: bad port`);
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function wildcardToLoopback(address: string): string {
  if (address === "0.0.0.0") return "127.0.0.1";
  if (address === "::") return "::1";
  return address;
}

/** The pod or container a session concerns, for its log lines. */
function sessionIds(entry: StreamingRequest): { pod: string } | { container: string } {
  return entry.kind === "portforward" ? { pod: entry.request.podId } : { container: entry.request.containerId };
}
