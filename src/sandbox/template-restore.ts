/**
 * A pod's VM restored from a template: QEMU launched with the template's
 * devices and `-incoming defer`, the saved state loaded, the vCPUs run;
 * then made the pod's own: while the agent is reached, given the clock and
 * a reseeded random pool, the pod's shared directory (a virtio-fs device on
 * a free PCIe root port, which the guest mounts as it appears) and network
 * card are added; then the network configured and the sandbox created with
 * the pod's hostname, DNS and share. The VM record is written once QEMU
 * runs and again with the share, so that a restarted vmpod takes the VM
 * over as any other.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { VmpodError, kindOf, messageOf, wrap } from "../common/errors.js";
import { makeSharedMountPoint, unmountTree } from "../common/mount.js";
import { Rollback } from "../common/rollback.js";
import { sleep } from "../common/time.js";
import type { AgentClient } from "../agent/client.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { Hypervisor, VmExit } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { GUEST_SHARED_DIR, SHARED_FS_TAG } from "./layout.js";
import { connectToAgent, withConsole, type PodVmOptions } from "./vm-agent.js";
import { saveVmRecord } from "./vm-record.js";

/**
 * A pod's VM restored from a template: its spec is the template's shape
 * launched for this pod (`incoming` and `paused`, shared memory and hot-plug
 * ports, no share; the network card of the interface's MAC, if any, given
 * with `hotplug`, its tap on the command line).
 */
export interface PodVmRestoreOptions extends PodVmOptions {
  /** The template's saved state, and its key (kept in the VM record). */
  readonly stateFile: string;
  readonly template: string;
}

export interface RestoredVm {
  readonly qemuPid: number;
  readonly agent: AgentClient;
  readonly exited: Promise<VmExit>;
  /** prepare, QEMU start to vCPUs running, agent reached and personalised, share and sandbox. */
  readonly timings: { prepareMs: number; vmStartMs: number; agentMs: number; sandboxMs: number };
}

/** The id of the pod's share among the VM's hot-added devices. */
export const RESTORED_SHARE_ID = "share0";
const RESTORE_TIMEOUT_MS = 60_000;
/** Bytes of the host's randomness the guest's pool is reseeded with. */
const RESEED_BYTES = 512;
/** How long the guest gets to find a network card just added. */
const NIC_APPEAR_MS = 10_000;
const NIC_POLL_MS = 10;
/** How long a failed restore waits to see whether QEMU is exiting. */
const EXIT_GRACE_MS = 1_000;

export async function restoreVm(options: PodVmRestoreOptions): Promise<RestoredVm> {
  const { paths, hypervisor, spec } = options;
  if (!spec.incoming) throw new VmpodError("InvalidArgument", "restore vm: the spec does not take a saved state");
  const signal = options.signal ? { signal: options.signal } : {};
  const timings = { prepareMs: 0, vmStartMs: 0, agentMs: 0, sandboxMs: 0 };
  const started = performance.now();
  const steps: Record<string, number> = {};
  const mark = (step: string) => (steps[step] = Math.round(performance.now() - started));
  let t = started;
  const lap = () => {
    const now = performance.now();
    const ms = now - t;
    t = now;
    return ms;
  };
  await using undo = new Rollback();
  let qemuPid: number;
  try {
    await mkdir(paths.root, { recursive: true, mode: 0o700 });
    undo.push("remove state dir", () => rm(paths.root, { recursive: true, force: true }));
    await mkdir(paths.sharedDir, { mode: 0o700 });
    await makeSharedMountPoint(paths.sharedDir);
    undo.push("unmount shared dir", () => unmountTree(paths.sharedDir));
    undo.push("clean up vm", () => hypervisor.cleanup());
    await hypervisor.prepare(spec, signal);
    timings.prepareMs = lap();
    await hypervisor.start(signal);
    mark("qmp");
    const handle = await hypervisor.handle();
    await saveVmRecord(paths, { spec, handle, template: options.template });
    qemuPid = handle.qemu.pid;
    mark("record");
    await hypervisor.restoreState(options.stateFile, { timeoutMs: RESTORE_TIMEOUT_MS, ...signal });
    mark("loaded");
    await hypervisor.resume(signal);
    mark("cont");
    timings.vmStartMs = lap();
  } catch (err) {
    throw wrap("restore vm", err);
  }
  const exited = hypervisor.wait();
  try {
    // The pod's devices are added while the agent is reached: nothing of the pod uses them before the sandbox is created.
    const devices = addDevices(hypervisor, spec, options, signal).then(() => mark("devices"));
    const reached = reachAgent(spec, exited, options).then((agent) => {
      undo.push("close agent", () => agent.close());
      mark("agent");
      return agent;
    });
    const [agent] = await allSettled(reached, devices);
    timings.agentMs = lap();
    await saveVmRecord(paths, { spec, handle: await hypervisor.handle(), template: options.template });
    mark("recorded");
    if (options.network) await configureNetwork(agent, options.network, signal);
    mark("network");
    await agent.createSandbox({
      sandboxId: options.id,
      hostname: options.hostname,
      dns: options.dns ?? [],
      storages: [{ driver: "virtio-fs", source: SHARED_FS_TAG, fstype: "virtiofs", mountPoint: GUEST_SHARED_DIR }],
    });
    timings.sandboxMs = lap();
    mark("sandbox");
    options.logger.debug("restore steps (ms since start)", steps);
    undo.commit();
    return { qemuPid, agent, exited, timings };
  } catch (err) {
    const gone = await Promise.race([exited.then(() => true), sleep(EXIT_GRACE_MS).then(() => false)]);
    throw await withConsole(spec, gone ? new VmpodError("Unavailable", "the restored VM exited", { cause: err }) : wrap("restore vm", err));
  }
}

/**
 * The agent connected, and the guest made this pod's own before anything
 * of the pod runs in it: its clock stopped when the template was saved, and
 * its random state is every restored VM's. Both calls go behind the health
 * check, in one round trip.
 */
function reachAgent(spec: VmSpec, exited: Promise<VmExit>, options: PodVmRestoreOptions): Promise<AgentClient> {
  return connectToAgent(spec, exited, options, (agent, call) =>
    Promise.all([agent.setGuestDateTime(new Date(), call), agent.reseedRandomDev(randomBytes(RESEED_BYTES), call)]),
  );
}

/**
 * Adds the pod's share (a fresh virtiofsd, its device on a free PCIe root
 * port) and network card (its tap is already QEMU's), which the guest finds
 * a moment later.
 */
async function addDevices(hypervisor: Hypervisor, spec: VmSpec, options: PodVmRestoreOptions, signal: { signal?: AbortSignal }): Promise<void> {
  await hypervisor.addDevice({ kind: "virtio-fs", id: RESTORED_SHARE_ID, tag: SHARED_FS_TAG, sourceDir: options.paths.sharedDir }, signal);
  const network = options.network;
  if (!network) return;
  const mac = network.nic.mac.toLowerCase();
  const card = spec.network?.nics.find((n) => n.hotplug && n.mac.toLowerCase() === mac);
  if (!card) throw new VmpodError("InvalidArgument", `restore vm: no network card with MAC ${mac} to add in the vm spec`);
  await hypervisor.addDevice({ kind: "nic", id: card.id }, signal);
}

/**
 * Has the agent configure the network card just added. The guest finds the
 * card a moment after it is added: the agent's NotFound for its MAC is
 * asked again until it appears.
 */
async function configureNetwork(
  agent: AgentClient,
  network: { readonly nic: InterfaceConfig; readonly routes: readonly RouteConfig[] },
  signal: { signal?: AbortSignal },
): Promise<void> {
  const deadline = performance.now() + NIC_APPEAR_MS;
  for (;;) {
    try {
      await agent.updateInterface(network.nic);
      break;
    } catch (err) {
      if (kindOf(err) !== "NotFound" || performance.now() > deadline) throw err;
    }
    await sleep(NIC_POLL_MS, signal.signal);
  }
  if (network.routes.length > 0) await agent.updateRoutes(network.routes);
}

/**
 * The first one's value once both have settled: neither is left running
 * behind a failure (the rollback would race it); both failures reported.
 */
async function allSettled<T>(first: Promise<T>, second: Promise<unknown>): Promise<[T]> {
  const [a, b] = await Promise.allSettled([first, second]);
  if (a.status === "fulfilled" && b.status === "fulfilled") return [a.value];
  const failures = [a, b].flatMap((r) => (r.status === "rejected" ? [r.reason as unknown] : []));
  if (failures.length === 1) throw failures[0];
  throw new AggregateError(failures, failures.map(messageOf).join("; "));
}
