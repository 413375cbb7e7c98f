/**
 * Reaching a freshly started VM's agent: open the transport, then wait for a
 * health check to be answered. The check is sent once and waits in the
 * channel until the guest opens its end, so no retry loop is needed past the
 * transport itself.
 */
import { VmpodError, wrap } from "../common/errors.js";
import { AgentClient } from "./client.js";
import type { AgentTransport } from "./transport.js";
import { TtrpcClient } from "./ttrpc/client.js";

export interface ConnectOptions {
  /** Milliseconds from now for the agent to answer. */
  readonly timeoutMs: number;
  /** Milliseconds allowed to each later ordinary call. */
  readonly callTimeoutMs: number;
  /** Aborts the wait, e.g. when the VM exits. */
  readonly signal?: AbortSignal;
}

export async function connectAgent(transport: AgentTransport, options: ConnectOptions): Promise<AgentClient> {
  const deadline = Date.now() + options.timeoutMs;
  const stream = await transport.connect(deadline, options.signal);
  const client = new AgentClient(new TtrpcClient(stream), options.callTimeoutMs);
  try {
    const remaining = Math.max(1, deadline - Date.now());
    const serving = await client.check({ timeoutMs: remaining, ...(options.signal ? { signal: options.signal } : {}) });
    if (!serving) throw new VmpodError("Unavailable", "agent answered but is not serving");
    return client;
  } catch (err) {
    client.close();
    if (err instanceof VmpodError && err.kind === "DeadlineExceeded") {
      throw new VmpodError("DeadlineExceeded", `agent (${transport.description}) did not answer within ${options.timeoutMs} ms`, { cause: err });
    }
    throw wrap(`wait for agent (${transport.description})`, err, "Unavailable");
  }
}
