/**
 * A SPDY/3.1 client for streaming tests, shaped like kubectl's: the HTTP
 * upgrade with subprotocol negotiation, then streams named by `streamtype`
 * for exec and attach, or error/data pairs for port forwarding. It can keep
 * flow control (announcing its window with SETTINGS, as a SPDY/3.1 peer
 * does) or ignore it as Kubernetes' own client library does.
 */
import http from "node:http";
import type { Socket } from "node:net";
import { once } from "node:events";
import { silentLogger } from "../../../src/common/log.js";
import { SettingId } from "../../../src/cri/streaming/spdy-frames.js";
import { headerMap } from "../../../src/cri/streaming/spdy-headers.js";
import { SpdySession } from "../../../src/cri/streaming/spdy-session.js";
import type { SpdyStream } from "../../../src/cri/streaming/spdy-stream.js";

export interface SpdyConnection {
  readonly session: SpdySession;
  readonly protocol: string;
  readonly socket: Socket;
}

export class UpgradeRefused extends Error {
  constructor(
    readonly status: number,
    readonly body: string,
    readonly headers: http.IncomingHttpHeaders,
  ) {
    super(`upgrade refused: ${status} ${body}`);
  }
}

/** Upgrades `url` to SPDY/3.1 offering `protocols`. */
export function connectSpdy(url: string, protocols: readonly string[], options: { flowControl?: boolean } = {}): Promise<SpdyConnection> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      headers: { Connection: "Upgrade", Upgrade: "SPDY/3.1", ...(protocols.length > 0 ? { "X-Stream-Protocol-Version": [...protocols] } : {}) },
    });
    req.on("upgrade", (res, socket: Socket, head: Buffer) => {
      const session = new SpdySession(socket, { role: "client", logger: silentLogger, head, lingerMs: 2000 });
      if (options.flowControl) session.settings([{ id: SettingId.InitialWindowSize, value: 64 * 1024 }]);
      resolve({ session, protocol: String(res.headers["x-stream-protocol-version"] ?? ""), socket });
    });
    req.on("response", (res) => {
      const parts: Buffer[] = [];
      res.on("data", (c: Buffer) => parts.push(c));
      res.on("end", () => reject(new UpgradeRefused(res.statusCode ?? 0, Buffer.concat(parts).toString("utf8").trim(), res.headers)));
    });
    req.on("error", reject);
    req.end();
  });
}

export interface CommandOptions {
  readonly protocols?: readonly string[];
  readonly tty?: boolean;
  readonly stdin?: string | Buffer;
  /** Keep stdin open until this resolves (after writing `stdin`). */
  readonly holdStdin?: Promise<unknown>;
  readonly stdout?: boolean;
  readonly stderr?: boolean;
  readonly resizes?: readonly { Width: number; Height: number }[];
  readonly flowControl?: boolean;
  /** Do not read stdout before this resolves. */
  readonly holdReading?: Promise<unknown>;
}

export interface CommandResult {
  readonly protocol: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly error: string;
  readonly stdoutBytes: number;
}

async function collect(stream: SpdyStream | undefined, hold?: Promise<unknown>): Promise<Buffer> {
  if (!stream) return Buffer.alloc(0);
  if (hold) {
    stream.pause();
    await hold;
  }
  const parts: Buffer[] = [];
  for await (const chunk of stream) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Runs an exec or attach URL the way kubectl does and gathers what came back. */
export async function runSpdyCommand(url: string, options: CommandOptions = {}): Promise<CommandResult> {
  const protocols = options.protocols ?? ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];
  const conn = await connectSpdy(url, protocols, { flowControl: options.flowControl ?? false });
  const { session } = conn;
  const open = (type: string) => session.openStream(headerMap({ streamtype: type }));
  const error = await open("error");
  error.end();
  const stdin = options.stdin !== undefined ? await open("stdin") : undefined;
  const stdout = options.stdout !== false ? await open("stdout") : undefined;
  stdout?.end();
  const stderr = options.stderr !== false && !options.tty ? await open("stderr") : undefined;
  stderr?.end();
  const resize = options.tty && conn.protocol !== "v2.channel.k8s.io" && conn.protocol !== "channel.k8s.io" ? await open("resize") : undefined;
  const results = Promise.all([collect(stdout, options.holdReading), collect(stderr), collect(error)]);
  // Awaited below; a failure meanwhile is not unhandled.
  results.catch(() => undefined);
  for (const size of options.resizes ?? []) resize?.write(JSON.stringify(size));
  if (stdin) {
    stdin.write(options.stdin!);
    if (options.holdStdin) await options.holdStdin;
    stdin.end();
  }
  const [out, err, status] = await results;
  resize?.end();
  await Promise.race([session.closed, once(conn.socket, "close")]);
  session.destroy();
  return { protocol: conn.protocol, stdout: out.toString("utf8"), stderr: err.toString("utf8"), error: status.toString("utf8"), stdoutBytes: out.length };
}

/** One forwarded connection over a port-forward session: sends `data`, half-closes, returns what came back and the error stream. */
export async function forwardOnce(session: SpdySession, requestId: string, port: number, data: string): Promise<{ data: string; error: string }> {
  const error = await session.openStream(headerMap({ streamtype: "error", port: String(port), requestid: requestId }));
  error.end();
  const stream = await session.openStream(headerMap({ streamtype: "data", port: String(port), requestid: requestId }));
  const results = Promise.all([collect(stream), collect(error)]);
  stream.end(data);
  const [back, err] = await results;
  return { data: back.toString("latin1"), error: err.toString("utf8") };
}
