/**
 * Runs an exec or attach for a connected client, whatever the transport:
 * hands the client's streams to the runtime, waits for the command, closes
 * the output streams once everything written reached them, and says how
 * it ended.
 */
import { finished } from "node:stream/promises";
import type { Writable } from "node:stream";
import { messageOf } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { ClientStreams, Runtime } from "../../sandbox/runtime.js";
import type { Outcome } from "./status.js";
import type { AttachRequest, ExecRequest } from "./types.js";

export type RemoteCommand = { readonly kind: "exec"; readonly request: ExecRequest } | { readonly kind: "attach"; readonly request: AttachRequest };

export async function runRemoteCommand(runtime: Runtime, command: RemoteCommand, streams: ClientStreams, logger: Logger): Promise<Outcome> {
  // A client going away makes writes fail; that must not take the daemon down.
  for (const out of [streams.stdout, streams.stderr]) out?.on("error", (err) => logger.debug("client stream failed", { err: messageOf(err) }));
  streams.stdin?.on("error", (err) => logger.debug("client stdin failed", { err: messageOf(err) }));
  let outcome: Outcome;
  try {
    if (command.kind === "exec") {
      const { containerId, command: argv, tty } = command.request;
      const code = await runtime.exec(containerId, argv, { tty }, streams);
      outcome = { kind: "exited", code, command: argv };
    } else {
      await runtime.attach(command.request.containerId, { tty: command.request.tty }, streams);
      outcome = { kind: "exited", code: 0 };
    }
  } catch (err) {
    logger.info("streaming command failed", { err: messageOf(err) });
    outcome = { kind: "failed", error: err };
  }
  await Promise.all([endOutput(streams.stdout), endOutput(streams.stderr)]);
  return outcome;
}

/** Ends an output stream if the runtime did not, and waits until it is flushed or gone. */
export async function endOutput(out: Writable | undefined): Promise<void> {
  if (!out || out.destroyed) return;
  if (!out.writableEnded) out.end();
  await finished(out, { readable: false }).catch(() => undefined);
}
