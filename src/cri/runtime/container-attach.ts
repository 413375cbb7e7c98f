/** Attach: a single-use streaming URL to the first process of a running container. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { checkStreams } from "../stream-checks.js";

export const attach: Unary<RuntimeMethods["attach"]> = async (deps, request) => {
  const containerId = checkStreams(deps.runtime, request);
  const url = deps.streaming.attachUrl({ containerId, tty: request.tty, stdin: request.stdin, stdout: request.stdout, stderr: request.stderr });
  return { url };
};
