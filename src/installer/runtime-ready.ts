/**
 * The installer's questions to the daemon it started, over the CRI socket
 * under the host root: is the runtime ready (Status, RuntimeReady), and
 * which pods does it still run.
 */
import { VmpodError, messageOf } from "../common/errors.js";
import { exists } from "../common/fs.js";
import { sleep } from "../common/time.js";
import { createCriClient } from "../cri/client.js";

export interface ReadyOptions {
  /** How long to wait for RuntimeReady in all. */
  readonly timeoutMs: number;
  /** Between two attempts. */
  readonly intervalMs?: number;
  readonly signal?: AbortSignal;
}

/** What the daemon said last, for the error when it never became ready. */
type LastAnswer = { readonly kind: "unreachable"; readonly error: string } | { readonly kind: "not-ready"; readonly reason: string };

/**
 * Waits until the daemon on `socket` answers Status with RuntimeReady true.
 * A daemon that never answers, or never becomes ready, is DeadlineExceeded
 * with what it said last.
 */
export async function waitForRuntimeReady(socket: string, options: ReadyOptions): Promise<void> {
  const deadline = Date.now() + options.timeoutMs;
  const interval = options.intervalMs ?? 500;
  let last: LastAnswer = { kind: "unreachable", error: "no attempt yet" };
  for (;;) {
    options.signal?.throwIfAborted();
    const left = deadline - Date.now();
    if (left <= 0) break;
    const client = createCriClient(socket);
    try {
      await client.waitForReady(Math.min(left, 2_000));
      const st = await client.runtime.status({}, { timeoutMs: Math.max(1, Math.min(deadline - Date.now(), 5_000)), ...(options.signal ? { signal: options.signal } : {}) });
      const ready = st.status?.conditions.find((c) => c.type === "RuntimeReady");
      if (ready?.status === true) return;
      last = { kind: "not-ready", reason: ready ? `${ready.reason}: ${ready.message}` : "no RuntimeReady condition" };
    } catch (err) {
      // An answer says more than a later failure (often the deadline cutting the last call short).
      if (last.kind === "unreachable") last = { kind: "unreachable", error: messageOf(err) };
    } finally {
      client.close();
    }
    await sleep(Math.max(0, Math.min(interval, deadline - Date.now())), options.signal);
  }
  const said = last.kind === "unreachable" ? `it does not answer on ${socket} (${last.error})` : `it answered but was not ready (${last.reason})`;
  throw new VmpodError("DeadlineExceeded", `vmpod did not become ready within ${options.timeoutMs} ms: ${said}`);
}

/**
 * The ids of the pods the daemon on `socket` still has, or undefined when it
 * does not answer within `timeoutMs` (no daemon, or a stuck one).
 */
export async function podsOfDaemon(socket: string, timeoutMs: number): Promise<string[] | undefined> {
  if (!(await exists(socket))) return undefined;
  const client = createCriClient(socket);
  try {
    await client.waitForReady(timeoutMs);
    const list = await client.runtime.listPodSandbox({}, { timeoutMs });
    return list.items.map((p) => p.id);
  } catch {
    return undefined;
  } finally {
    client.close();
  }
}
