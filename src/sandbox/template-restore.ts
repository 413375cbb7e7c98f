/**
 * A pod's VM restored from a template: QEMU launched with the template's
 * devices and `-incoming defer`, the saved state loaded, the vCPUs run;
 * then made the pod's own through the agent: the clock set to now, the
 * guest's random pool reseeded from the host's, the pod's shared directory
 * added (a virtio-fs device on a free PCIe root port, which the guest
 * mounts as it appears), and the sandbox created with the pod's hostname
 * and DNS. The VM record is written once QEMU runs and again with the
 * share, so that a restarted vmpod takes the VM over as any other.
 */
import { randomBytes } from "node:crypto";
import { mkdir, rm } from "node:fs/promises";
import { VmpodError, kindOf, wrap } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { makeSharedMountPoint, unmountTree } from "../common/mount.js";
import { Rollback } from "../common/rollback.js";
import { sleep } from "../common/time.js";
import type { AgentClient } from "../agent/client.js";
import type { InterfaceConfig, RouteConfig } from "../agent/network-types.js";
import type { Hypervisor, VmExit } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { GUEST_SHARED_DIR, SHARED_FS_TAG, type SandboxPaths } from "./layout.js";
import { connectToAgent, withConsole } from "./vm-agent.js";
import { saveVmRecord } from "./vm-record.js";

export interface PodVmRestoreOptions {
  readonly id: string;
  readonly paths: SandboxPaths;
  /**
   * The template's shape launched for this pod: `incoming` and `paused`,
   * shared memory and hot-plug ports, no share and no network card; its run
   * dir `paths.vmDir`.
   */
  readonly spec: VmSpec;
  readonly hypervisor: Hypervisor;
  /** The template's saved state, and its key (kept in the VM record). */
  readonly stateFile: string;
  readonly template: string;
  readonly hostname: string;
  readonly dns?: readonly string[];
  /**
   * The guest's network interface and routes; the spec's network card of
   * the same MAC is given with `hotplug` (its tap on the command line).
   */
  readonly network?: { readonly nic: InterfaceConfig; readonly routes: readonly RouteConfig[] };
  readonly agentDialTimeoutMs: number;
  readonly agentCallTimeoutMs: number;
  readonly logger: Logger;
  readonly signal?: AbortSignal;
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
const NIC_POLL_MS = 50;
/** How long a failed restore waits to see whether QEMU is exiting. */
const EXIT_GRACE_MS = 1_000;

export async function restoreVm(options: PodVmRestoreOptions): Promise<RestoredVm> {
  const { paths, hypervisor, spec } = options;
  if (!spec.incoming) throw new VmpodError("InvalidArgument", "restore vm: the spec does not take a saved state");
  const signal = options.signal ? { signal: options.signal } : {};
  const timings = { prepareMs: 0, vmStartMs: 0, agentMs: 0, sandboxMs: 0 };
  let t = performance.now();
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
    const handle = await hypervisor.handle();
    await saveVmRecord(paths, { spec, handle, template: options.template });
    qemuPid = handle.qemu.pid;
    await hypervisor.restoreState(options.stateFile, { timeoutMs: RESTORE_TIMEOUT_MS, ...signal });
    await hypervisor.resume(signal);
    timings.vmStartMs = lap();
  } catch (err) {
    throw wrap("restore vm", err);
  }
  const exited = hypervisor.wait();
  try {
    const agent = await connectToAgent(spec, exited, options);
    undo.push("close agent", () => agent.close());
    // Before anything else runs in the guest: its clock stopped when the template was saved, and its random state is every restored VM's.
    await agent.setGuestDateTime(new Date());
    await agent.reseedRandomDev(randomBytes(RESEED_BYTES));
    timings.agentMs = lap();
    await hypervisor.addDevice({ kind: "virtio-fs", id: RESTORED_SHARE_ID, tag: SHARED_FS_TAG, sourceDir: paths.sharedDir }, signal);
    await saveVmRecord(paths, { spec, handle: await hypervisor.handle(), template: options.template });
    if (options.network) await addNetwork(hypervisor, agent, spec, options.network, signal);
    await agent.createSandbox({
      sandboxId: options.id,
      hostname: options.hostname,
      dns: options.dns ?? [],
      storages: [{ driver: "virtio-fs", source: SHARED_FS_TAG, fstype: "virtiofs", mountPoint: GUEST_SHARED_DIR }],
    });
    timings.sandboxMs = lap();
    undo.commit();
    return { qemuPid, agent, exited, timings };
  } catch (err) {
    const gone = await Promise.race([exited.then(() => true), sleep(EXIT_GRACE_MS).then(() => false)]);
    throw await withConsole(spec, gone ? new VmpodError("Unavailable", "the restored VM exited", { cause: err }) : wrap("restore vm", err));
  }
}

/**
 * Adds the pod's network card (its tap is already QEMU's) and has the agent
 * configure it. The guest finds the card a moment after it is added: the
 * agent's NotFound for its MAC is asked again until it appears.
 */
async function addNetwork(
  hypervisor: Hypervisor,
  agent: AgentClient,
  spec: VmSpec,
  network: { readonly nic: InterfaceConfig; readonly routes: readonly RouteConfig[] },
  signal: { signal?: AbortSignal },
): Promise<void> {
  const mac = network.nic.mac.toLowerCase();
  const card = spec.network?.nics.find((n) => n.hotplug && n.mac.toLowerCase() === mac);
  if (!card) throw new VmpodError("InvalidArgument", `restore vm: no network card with MAC ${mac} to add in the vm spec`);
  await hypervisor.addDevice({ kind: "nic", id: card.id }, signal);
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
