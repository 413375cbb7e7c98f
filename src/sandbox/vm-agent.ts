/**
 * The host's side of a pod VM's agent, as booting, restoring and taking
 * over a VM all need it: the connection (given up when the VM exits), and
 * the error for a failed boot with the end of the guest's console.
 */
import { VmpodError } from "../common/errors.js";
import type { AgentClient } from "../agent/client.js";
import { connectAgent, type ConnectOptions } from "../agent/connect.js";
import { UnixSocketTransport } from "../agent/transport.js";
import type { VmExit } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { readTail } from "../hypervisor/tail.js";

const CONSOLE_TAIL_BYTES = 2_048;

/** Connects to the VM's agent, giving up when the VM exits. */
export async function connectToAgent(
  spec: VmSpec,
  exited: Promise<VmExit>,
  options: { readonly agentDialTimeoutMs: number; readonly agentCallTimeoutMs: number; readonly signal?: AbortSignal },
  /** Calls sent right behind the health check (connect.ts). */
  alongside?: ConnectOptions["alongside"],
): Promise<AgentClient> {
  const socket = spec.agent?.socketPath;
  if (!socket) throw new VmpodError("InvalidArgument", "the VM spec has no agent channel");
  const vmGone = new AbortController();
  void exited.then(() => vmGone.abort(new VmpodError("Unavailable", "the VM exited")));
  return connectAgent(new UnixSocketTransport(socket), {
    timeoutMs: options.agentDialTimeoutMs,
    callTimeoutMs: options.agentCallTimeoutMs,
    signal: options.signal ? AbortSignal.any([options.signal, vmGone.signal]) : vmGone.signal,
    ...(alongside ? { alongside } : {}),
  });
}

/** `err` with the last lines of the guest's console. */
export async function withConsole(spec: VmSpec, err: VmpodError): Promise<VmpodError> {
  const tail = (await readTail(spec.consoleLog, CONSOLE_TAIL_BYTES)).trim();
  return tail ? new VmpodError(err.kind, `${err.message}; console: ${tail}`) : err;
}
