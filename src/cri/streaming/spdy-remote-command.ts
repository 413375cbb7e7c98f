/**
 * Exec and attach over SPDY, the remote command protocols v1 to v4
 * (`channel.k8s.io` ... `v4.channel.k8s.io`): the client opens one stream
 * per channel, naming it in the `streamtype` header; once the streams the
 * request calls for are all there the command runs; at the end the error
 * stream carries how it ended (a JSON status from v4, text before) and the
 * session closes.
 */
import type { Logger } from "../../common/log.js";
import type { ClientStreams, Runtime } from "../../sandbox/runtime.js";
import { runRemoteCommand, endOutput, type RemoteCommand } from "./remote-command.js";
import { ResizeQueue } from "./resize.js";
import type { SpdySession } from "./spdy-session.js";
import type { SpdyStream } from "./spdy-stream.js";
import { statusJson, statusText } from "./status.js";

/** Server preference order. */
export const SPDY_REMOTE_COMMAND_PROTOCOLS = ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"] as const;
export type SpdyRemoteCommandProtocol = (typeof SPDY_REMOTE_COMMAND_PROTOCOLS)[number];

type StreamType = "error" | "stdin" | "stdout" | "stderr" | "resize";
const STREAM_TYPES: readonly string[] = ["error", "stdin", "stdout", "stderr", "resize"];

export interface SpdyRemoteCommandOptions {
  readonly runtime: Runtime;
  readonly logger: Logger;
  /** How long the client has to open its streams. */
  readonly streamCreationTimeoutMs: number;
}

/** The stream types a client opens for a request under a protocol version. */
export function expectedStreams(command: RemoteCommand, protocol: SpdyRemoteCommandProtocol): Set<StreamType> {
  const { tty, stdin, stdout, stderr } = command.request;
  const expected = new Set<StreamType>(["error"]);
  if (stdin) expected.add("stdin");
  if (stdout) expected.add("stdout");
  // A terminal merges stderr into stdout.
  if (stderr && !tty) expected.add("stderr");
  if (tty && protocol !== "v2.channel.k8s.io" && protocol !== "channel.k8s.io") expected.add("resize");
  return expected;
}

/** Serves one remote command on a fresh session; resolves when the session has closed. */
export async function serveSpdyRemoteCommand(
  session: SpdySession,
  protocol: SpdyRemoteCommandProtocol,
  command: RemoteCommand,
  options: SpdyRemoteCommandOptions,
): Promise<void> {
  const expected = expectedStreams(command, protocol);
  const streams = await collectStreams(session, expected, options);
  if (!streams) {
    session.close();
    await session.closed;
    return;
  }
  const resize = new ResizeQueue();
  const resizeStream = streams.get("resize");
  if (resizeStream) resize.feedFrom(resizeStream);
  const stdin = streams.get("stdin");
  const stdout = streams.get("stdout");
  const stderr = streams.get("stderr");
  const client: ClientStreams = {
    ...(stdin ? { stdin } : {}),
    ...(stdout ? { stdout } : {}),
    ...(stderr ? { stderr } : {}),
    ...(resizeStream ? { resize } : {}),
  };
  const outcome = await runRemoteCommand(options.runtime, command, client, options.logger);
  resize.end();
  const error = streams.get("error")!;
  if (!error.destroyed) {
    const message = protocol === "v4.channel.k8s.io" ? statusJson(outcome) : statusText(outcome);
    if (message.length > 0) error.write(message);
  }
  await endOutput(error);
  session.close();
  await session.closed;
}

/**
 * Waits for the client's streams. Streams the request did not ask for are
 * read and dropped. Returns undefined if the session closed or the client
 * took too long.
 */
function collectStreams(session: SpdySession, expected: Set<StreamType>, options: SpdyRemoteCommandOptions): Promise<Map<StreamType, SpdyStream> | undefined> {
  return new Promise((resolve) => {
    const found = new Map<StreamType, SpdyStream>();
    const finish = (result: Map<StreamType, SpdyStream> | undefined) => {
      clearTimeout(timer);
      session.off("stream", onStream);
      session.off("close", onClose);
      resolve(result);
    };
    const onStream = (stream: SpdyStream) => {
      const type = stream.header("streamtype");
      if (!STREAM_TYPES.includes(type) || !expected.has(type as StreamType) || found.has(type as StreamType)) {
        options.logger.debug("unexpected spdy stream", { type, id: stream.id });
        stream.resume();
        return;
      }
      found.set(type as StreamType, stream);
      // Nothing meaningful comes from the client on these: drain them.
      if (type === "error" || type === "stdout" || type === "stderr") stream.resume();
      if (found.size === expected.size) finish(found);
    };
    const onClose = () => finish(undefined);
    const timer = setTimeout(() => {
      options.logger.info("client did not open its streams in time", { expected: [...expected], got: [...found.keys()] });
      finish(undefined);
    }, options.streamCreationTimeoutMs);
    session.on("stream", onStream);
    session.on("close", onClose);
  });
}
