/**
 * Reaching a freshly started VM's agent: open the transport, then wait for a
 * health check to be answered. The check is sent once and waits in the
 * channel until the guest opens its end, so no retry loop is needed past the
 * transport itself. Calls the caller needs first (a restored VM's clock and
 * random pool) may go right behind the check instead of one round trip
 * later.
 */
import { VmpodError, wrap } from "../common/errors.js";
import { AgentClient, type AgentCallOptions } from "./client.js";
import type { AgentTransport } from "./transport.js";
import { TtrpcClient } from "./ttrpc/client.js";

export interface ConnectOptions {
  /** Milliseconds from now for the agent to answer. */
  readonly timeoutMs: number;
  /** Milliseconds allowed to each later ordinary call. */
  readonly callTimeoutMs: number;
  /** Aborts the wait, e.g. when the VM exits. */
  readonly signal?: AbortSignal;
  /**
   * Calls made as soon as the check is sent, without waiting for its answer
   * (the agent reads them in the same go), given the check's deadline and
   * signal; connecting succeeds once the check and these are answered, and
   * fails with the check's error, or theirs.
   */
  readonly alongside?: (agent: AgentClient, call: AgentCallOptions) => Promise<unknown>;
}

export async function connectAgent(transport: AgentTransport, options: ConnectOptions): Promise<AgentClient> {
  const deadline = Date.now() + options.timeoutMs;
  const stream = await transport.connect(deadline, options.signal);
  const client = new AgentClient(new TtrpcClient(stream), options.callTimeoutMs);
  try {
    const remaining = Math.max(1, deadline - Date.now());
    const call: AgentCallOptions = { timeoutMs: remaining, ...(options.signal ? { signal: options.signal } : {}) };
    const checked = client.check(call);
    const alongside = options.alongside?.(client, call);
    // Reported through the check when both fail.
    alongside?.catch(() => undefined);
    const serving = await checked;
    if (!serving) throw new VmpodError("Unavailable", "agent answered but is not serving");
    await alongside;
    return client;
  } catch (err) {
    client.close();
    if (err instanceof VmpodError && err.kind === "DeadlineExceeded") {
      throw new VmpodError("DeadlineExceeded", `agent (${transport.description}) did not answer within ${options.timeoutMs} ms`, { cause: err });
    }
    throw wrap(`wait for agent (${transport.description})`, err, "Unavailable");
  }
}
