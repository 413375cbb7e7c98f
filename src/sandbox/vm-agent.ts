/**
 * The host's side of a pod VM's agent, as booting, restoring and taking
 * over a VM all need it: what a boot or a restore is given, the connection
 * (given up when the VM exits), and the error for a failed boot with the
 * end of the guest's console.
 */
import { VmpodError } from "../common/errors.js";
import type { AgentClient } from "../agent/client.js";
import { connectAgent, type ConnectOptions } from "../agent/connect.js";
import { UnixSocketTransport } from "../agent/transport.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { Logger } from "../common/log.js";
import type { Hypervisor, VmExit } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { readTail } from "../hypervisor/tail.js";
import type { SandboxPaths } from "./layout.js";

const CONSOLE_TAIL_BYTES = 2_048;

/** A pod's VM to boot (or, with a template's state, to restore) and make the pod's own through its agent. */
export interface PodVmOptions {
  readonly id: string;
  readonly paths: SandboxPaths;
  /** The VM to launch; its run dir must be `paths.vmDir`, its share `paths.sharedDir`. */
  readonly spec: VmSpec;
  readonly hypervisor: Hypervisor;
  readonly hostname: string;
  /** Lines of the guest's /etc/resolv.conf. */
  readonly dns?: readonly string[];
  /** The guest's network interface and routes (its NIC is in the spec). */
  readonly network?: { readonly nic: InterfaceConfig; readonly routes: readonly RouteConfig[] };
  readonly agentDialTimeoutMs: number;
  readonly agentCallTimeoutMs: number;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
}

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
