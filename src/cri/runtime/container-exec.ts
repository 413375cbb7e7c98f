/** Exec: a single-use streaming URL to run a command in a running container. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { checkStreams } from "../stream-checks.js";
import { invalid } from "../validate.js";

export const exec: Unary<RuntimeMethods["exec"]> = async (deps, request) => {
  const containerId = checkStreams(deps.runtime, request);
  if (request.cmd.length === 0) throw invalid("cmd", "must not be empty");
  const url = deps.streaming.execUrl({ containerId, command: [...request.cmd], tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr });
  return { url };
};
