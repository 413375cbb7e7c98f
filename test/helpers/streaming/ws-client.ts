/**
 * A WebSocket client of the channel protocols for streaming tests, as
 * kubectl 1.30+ speaks them: channel byte first (or a digit and base64),
 * the v5 close signal for stdin, and port forwarding's port-prefixed
 * channel pairs.
 */
import { once } from "node:events";
import WebSocket from "ws";

export interface WsCommandOptions {
  readonly protocols?: readonly string[];
  readonly stdin?: string;
  /** Keep stdin open until this resolves (after writing `stdin`). */
  readonly holdStdin?: Promise<unknown>;
  readonly resizes?: readonly { Width: number; Height: number }[];
}

export interface WsResult {
  readonly protocol: string;
  /** Bytes received per channel. */
  readonly channels: ReadonlyMap<number, string>;
  readonly closeCode: number;
}

function encode(protocol: string, channel: number, data: Buffer): Buffer | string {
  return protocol.includes("base64") ? String.fromCharCode(0x30 + channel) + data.toString("base64") : Buffer.concat([Buffer.from([channel]), data]);
}

function decode(protocol: string, message: Buffer): { channel: number; data: Buffer } {
  if (protocol.includes("base64")) return { channel: message[0]! - 0x30, data: Buffer.from(message.subarray(1).toString("latin1"), "base64") };
  return { channel: message[0]!, data: message.subarray(1) };
}

/** Opens a WebSocket; `onMessage` is in place before the first message can arrive. */
export async function openWs(url: string, protocols: readonly string[], onMessage: (ws: WebSocket, data: Buffer) => void): Promise<WebSocket> {
  const ws = new WebSocket(url.replace(/^http/, "ws"), [...protocols]);
  ws.on("message", (data: Buffer) => onMessage(ws, data));
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`websocket refused: ${res.statusCode}`)));
  });
  return ws;
}

/** Runs an exec or attach URL over WebSocket and gathers every channel until the server closes. */
export async function runWsCommand(url: string, options: WsCommandOptions = {}): Promise<WsResult> {
  const channels = new Map<number, string>();
  const ws = await openWs(url, options.protocols ?? ["v5.channel.k8s.io", "v4.channel.k8s.io"], (socket, raw) => {
    const { channel, data } = decode(socket.protocol, raw);
    channels.set(channel, (channels.get(channel) ?? "") + data.toString("utf8"));
  });
  const protocol = ws.protocol;
  const closed = once(ws, "close") as Promise<[number, Buffer]>;
  for (const size of options.resizes ?? []) ws.send(encode(protocol, 4, Buffer.from(JSON.stringify(size))));
  if (options.stdin !== undefined) {
    ws.send(encode(protocol, 0, Buffer.from(options.stdin)));
    if (options.holdStdin) await options.holdStdin;
    if (protocol.startsWith("v5.")) ws.send(Buffer.from([255, 0]));
  }
  const [code] = await closed;
  return { protocol, channels, closeCode: code };
}

/**
 * Port forwarding over WebSocket: sends `data` on each port's data channel,
 * waits for as many bytes back (after the 2-byte port prefix) or for an
 * error, then closes and returns both channels of each port.
 */
export async function wsForward(url: string, ports: readonly number[], data: string, protocol = "v4.channel.k8s.io"): Promise<{ data: Buffer[]; errors: Buffer[] }> {
  const query = ports.map((p) => `port=${p}`).join("&");
  const data_: Buffer[] = ports.map(() => Buffer.alloc(0));
  const errors: Buffer[] = ports.map(() => Buffer.alloc(0));
  const settled = () => ports.every((_p, i) => data_[i]!.length >= 2 + data.length || errors[i]!.length > 2);
  let wake: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (wake = resolve));
  const ws = await openWs(`${url}?${query}`, [protocol], (socket, raw) => {
    const { channel, data: payload } = decode(socket.protocol, raw);
    const i = channel >> 1;
    if (channel % 2 === 0) data_[i] = Buffer.concat([data_[i]!, payload]);
    else errors[i] = Buffer.concat([errors[i]!, payload]);
    if (settled()) wake();
  });
  const closed = once(ws, "close");
  ports.forEach((_p, i) => ws.send(encode(ws.protocol, 2 * i, Buffer.from(data))));
  await Promise.race([done, closed]);
  ws.close();
  await closed;
  return { data: data_, errors };
}
