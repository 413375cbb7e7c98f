/**
 * Builds a VM template: boots a VM with nothing of any pod in it (no share,
 * no network card, free PCIe root ports for them instead), waits until its
 * agent answers a health check, closes the agent connection, and saves the
 * paused VM's whole state to a file. The VM is stopped and its run
 * directory removed whatever happens.
 */
import { VmpodError, wrap } from "../common/errors.js";
import { Rollback } from "../common/rollback.js";
import { connectAgent } from "../agent/connect.js";
import { UnixSocketTransport } from "../agent/transport.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";

export interface TemplateBuildOptions {
  /** The template VM: booting (neither paused nor incoming), with an agent channel. */
  readonly spec: VmSpec;
  readonly hypervisor: Hypervisor;
  /** Where the saved state goes. */
  readonly stateFile: string;
  readonly agentDialTimeoutMs: number;
  readonly agentCallTimeoutMs: number;
  readonly saveTimeoutMs: number;
  readonly signal?: AbortSignal;
}

export async function buildTemplate(options: TemplateBuildOptions): Promise<void> {
  const { spec, hypervisor } = options;
  const socket = spec.agent?.socketPath;
  if (!socket) throw new VmpodError("InvalidArgument", "build vm template: the spec has no agent channel");
  const signal = options.signal ? { signal: options.signal } : {};
  await using undo = new Rollback();
  try {
    undo.push("clean up template vm", () => hypervisor.cleanup());
    await hypervisor.prepare(spec, signal);
    await hypervisor.start(signal);
    const vmGone = new AbortController();
    void hypervisor.wait().then(() => vmGone.abort(new VmpodError("Unavailable", "the template VM exited")));
    const agent = await connectAgent(new UnixSocketTransport(socket), {
      timeoutMs: options.agentDialTimeoutMs,
      callTimeoutMs: options.agentCallTimeoutMs,
      signal: options.signal ? AbortSignal.any([options.signal, vmGone.signal]) : vmGone.signal,
    });
    try {
      await agent.check();
    } finally {
      agent.close();
    }
    await hypervisor.saveState(options.stateFile, { timeoutMs: options.saveTimeoutMs, ...signal });
  } catch (err) {
    throw wrap("build vm template", err);
  }
}
