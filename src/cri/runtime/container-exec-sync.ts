/** ExecSync: runs a command in a container and answers with its output and exit code; `timeout` in seconds, 0 for none. */
import type { RuntimeMethods, Unary } from "../deps.js";
import { invalid, requireId, toNumber } from "../validate.js";

export const execSync: Unary<RuntimeMethods["execSync"]> = async (deps, request) => {
  const id = requireId(request.containerId, "container_id");
  if (request.cmd.length === 0) throw invalid("cmd", "must not be empty");
  if (request.timeout < 0n) throw invalid("timeout", `${request.timeout} is negative`);
  const result = await deps.runtime.execSync(id, request.cmd, toNumber(request.timeout, "timeout"));
  return { stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode };
};
