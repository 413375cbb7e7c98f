/**
 * Checks shared by Exec and Attach before a streaming URL is handed out:
 * the container exists and runs, at least one stream is asked for, and a
 * terminal comes without a separate stderr (the terminal carries both).
 */
import { VmpodError } from "../common/errors.js";
import type { Runtime } from "../sandbox/runtime.js";
import { invalid, requireId } from "./validate.js";

export interface StreamFlags {
  readonly containerId: string;
  readonly tty: boolean;
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
}

export function checkStreams(runtime: Runtime, request: StreamFlags): string {
  const id = requireId(request.containerId, "container_id");
  if (!request.stdin && !request.stdout && !request.stderr) throw invalid("stdin, stdout, stderr", "at least one must be asked for");
  if (request.tty && request.stderr) throw invalid("stderr", "cannot be asked for with tty (the terminal carries it)");
  const status = runtime.containerStatus(id);
  if (status.state !== "running") throw new VmpodError("FailedPrecondition", `container ${id} is not running (${status.state})`);
  return id;
}
