/**
 * Exec and attach over WebSocket (what kubectl speaks from 1.30, through
 * the API server): channels 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize.
 * `v5.channel.k8s.io` adds the close signal (the client's stdin EOF);
 * `v4.channel.k8s.io` and v5 end with a JSON status on the error channel,
 * the older `channel.k8s.io` and `base64.channel.k8s.io` with its text.
 */
import type { Logger } from "../../common/log.js";
import type { ClientStreams, Runtime } from "../../sandbox/runtime.js";
import { endOutput, runRemoteCommand, type RemoteCommand } from "./remote-command.js";
import { ResizeQueue } from "./resize.js";
import { statusJson, statusText } from "./status.js";
import type { ChannelEncoding, ChannelSocket } from "./ws-channels.js";

/** Server preference order. */
export const WS_REMOTE_COMMAND_PROTOCOLS = [
  "v5.channel.k8s.io",
  "v4.channel.k8s.io",
  "v4.base64.channel.k8s.io",
  "channel.k8s.io",
  "base64.channel.k8s.io",
] as const;
export type WsRemoteCommandProtocol = (typeof WS_REMOTE_COMMAND_PROTOCOLS)[number];

export const Channel = { Stdin: 0, Stdout: 1, Stderr: 2, Error: 3, Resize: 4 } as const;

export function channelEncoding(protocol: string): ChannelEncoding {
  return protocol.includes("base64") ? "base64" : "binary";
}

export async function serveWsRemoteCommand(
  socket: ChannelSocket,
  protocol: WsRemoteCommandProtocol,
  command: RemoteCommand,
  options: { readonly runtime: Runtime; readonly logger: Logger },
): Promise<void> {
  const { tty, stdin, stdout, stderr } = command.request;
  const resize = new ResizeQueue();
  const client: ClientStreams = {
    ...(stdin ? { stdin: socket.input(Channel.Stdin) } : {}),
    ...(stdout ? { stdout: socket.output(Channel.Stdout) } : {}),
    ...(stderr && !tty ? { stderr: socket.output(Channel.Stderr) } : {}),
    ...(tty ? { resize } : {}),
  };
  if (tty) {
    const input = socket.input(Channel.Resize);
    input.on("data", (chunk: Buffer) => resize.pushJson(chunk.toString("utf8")));
    input.once("end", () => resize.end());
  }
  const outcome = await runRemoteCommand(options.runtime, command, client, options.logger);
  resize.end();
  const json = protocol === "v5.channel.k8s.io" || protocol === "v4.channel.k8s.io" || protocol === "v4.base64.channel.k8s.io";
  const message = json ? statusJson(outcome) : statusText(outcome);
  const error = socket.output(Channel.Error);
  error.on("error", () => undefined);
  if (message.length > 0) error.write(message);
  await endOutput(error);
  socket.close();
  await socket.closed;
}
