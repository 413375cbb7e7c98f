/**
 * The HTTP side of a streaming connection before it becomes SPDY or
 * WebSocket: choosing the subprotocol the client and this server share
 * (the client's order wins, as in Kubernetes), answering 101, and plain
 * HTTP errors written straight onto the socket of an upgrade request.
 */
import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";

/** Every value of a request header, split on commas. */
export function headerValues(req: IncomingMessage, name: string): string[] {
  const values = req.headersDistinct[name.toLowerCase()] ?? [];
  return values.flatMap((v) => v.split(",")).map((v) => v.trim()).filter((v) => v.length > 0);
}

/**
 * The first protocol the client offers that the server supports; "" when
 * the client offered none (old clients), undefined when nothing matches.
 */
export function negotiate(offered: readonly string[], supported: readonly string[]): string | undefined {
  if (offered.length === 0) return "";
  return offered.find((p) => supported.includes(p));
}

export function isSpdyUpgrade(req: IncomingMessage): boolean {
  return headerValues(req, "upgrade").some((v) => v.toLowerCase().startsWith("spdy/3"));
}

export function isWebSocketUpgrade(req: IncomingMessage): boolean {
  return headerValues(req, "upgrade").some((v) => v.toLowerCase() === "websocket");
}

/** Answers 101 for a SPDY/3.1 upgrade, naming the chosen subprotocol if any. */
export function acceptSpdy(socket: Duplex, protocol: string): void {
  const lines = ["HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", "Upgrade: SPDY/3.1"];
  if (protocol !== "") lines.push(`X-Stream-Protocol-Version: ${protocol}`);
  socket.write(lines.join("\r\n") + "\r\n\r\n");
}

/** Writes a plain-text HTTP error and closes the socket. */
export function rejectUpgrade(socket: Duplex, status: number, message: string, headers: Readonly<Record<string, string>> = {}): void {
  if (socket.destroyed) return;
  const body = Buffer.from(message + "\n", "utf8");
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`,
    "Content-Type: text/plain; charset=utf-8",
    `Content-Length: ${body.length}`,
    "Connection: close",
    ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`),
  ];
  socket.end(Buffer.concat([Buffer.from(lines.join("\r\n") + "\r\n\r\n", "latin1"), body]));
}
