/**
 * Install and uninstall, in the manner of kata-deploy: the host's files,
 * then systemd, then the daemon's readiness over CRI, then the cluster
 * (RuntimeClasses, the node label); uninstall the same backwards.
 *
 * The node is labelled vmpod.io/runtime=true only once its kubelet talks to
 * vmpod (what the node reports as its container runtime): before that,
 * vmpod pods sent to it would reach another runtime. Switching kubelet to
 * vmpod is the operator's step (drain the node, restart kubelet: the
 * drop-in is in place), or the installer's with `restartKubelet`. For the
 * same reason, a node whose kubelet uses vmpod is not uninstalled unless
 * forced: kubelet would lose its runtime, and could not even start the
 * installer's pod again.
 */
import { join } from "node:path";
import { failedPrecondition, messageOf, wrap } from "../common/errors.js";
import { exists } from "../common/fs.js";
import { processesMentioning } from "../common/processes.js";
import type { Logger } from "../common/log.js";
import { sleep } from "../common/time.js";
import { ensureRuntimeClasses, isLabelled, kubeletUsesVmpod, labelNode, loadRuntimeClasses, removeRuntimeClassesIfLast, unlabelNode } from "./cluster.js";
import type { HostCommands } from "./host-commands.js";
import { DEPLOY_FILES, installHostFiles, purgeDaemonData, removeHostFiles, type HostChanges } from "./host-files.js";
import type { KubeApi } from "./kube-api.js";
import { HOST_PATHS, KUBELET_UNIT, UNIT_NAME, type HostRoot } from "./layout.js";
import type { PayloadSource } from "./payload.js";
import { podsOfDaemon, waitForRuntimeReady } from "./runtime-ready.js";

export interface InstallerDeps {
  readonly host: HostRoot;
  readonly commands: HostCommands;
  /** The cluster and this node's name; absent when installing on a node by hand, without Kubernetes. */
  readonly cluster?: { readonly api: KubeApi; readonly nodeName: string };
  readonly logger: Logger;
}

export interface InstallOptions {
  readonly source: PayloadSource;
  /** Restart kubelet when its drop-in changed, and wait for it to report vmpod. */
  readonly restartKubelet?: boolean;
  /** How long the daemon (and, with restartKubelet, kubelet) may take to come up. */
  readonly readyTimeoutMs: number;
  /** Between two looks at the daemon or the node (default: half a second for the daemon, 10 s for the node). */
  readonly pollIntervalMs?: number;
  readonly signal?: AbortSignal;
}

export interface InstallOutcome {
  readonly host: HostChanges;
  readonly createdRuntimeClasses: readonly string[];
  /** True when the node carries vmpod.io/runtime=true at the end. */
  readonly labelled: boolean;
}

export interface UninstallOptions {
  /** Where the installer's deploy/ files are (the RuntimeClasses to delete). */
  readonly source: Pick<PayloadSource, "packageDir">;
  /** Uninstall even though kubelet uses vmpod. */
  readonly force?: boolean;
  /** Also remove the daemon's data (/var/lib/vmpod, /run/vmpod), when it runs no pods. */
  readonly purge?: boolean;
  /** Restart kubelet when its drop-in was removed. */
  readonly restartKubelet?: boolean;
}

export async function install(deps: InstallerDeps, options: InstallOptions): Promise<InstallOutcome> {
  const { host, commands, logger } = deps;
  const changes = await step("install vmpod's files", () => installHostFiles(host, options.source, logger));
  await step("systemd", async () => {
    await commands.systemctl(["daemon-reload"]);
    if (changes.payloadChanged || changes.unitChanged) {
      // A new vmpod: (re)start the daemon on it. Pod VMs live through the restart.
      await commands.systemctl(["enable", UNIT_NAME]);
      await commands.systemctl(["restart", UNIT_NAME]);
    } else {
      await commands.systemctl(["enable", "--now", UNIT_NAME]);
    }
  });
  const socket = host.path(HOST_PATHS.socket);
  const signal = options.signal ? { signal: options.signal } : {};
  const interval = options.pollIntervalMs === undefined ? {} : { intervalMs: options.pollIntervalMs };
  await step("wait for vmpod", () => waitForRuntimeReady(socket, { timeoutMs: options.readyTimeoutMs, ...interval, ...signal }));
  logger.info("vmpod is ready", { socket: HOST_PATHS.socket, upgraded: changes.payloadChanged });
  const kubeletRestarted = options.restartKubelet === true && changes.dropInChanged;
  if (kubeletRestarted) await step("restart kubelet", () => commands.systemctl(["restart", KUBELET_UNIT]));

  const cluster = deps.cluster;
  if (!cluster) return { host: changes, createdRuntimeClasses: [], labelled: false };
  const classes = await loadRuntimeClasses(join(options.source.packageDir, DEPLOY_FILES.runtimeClasses));
  const createdRuntimeClasses = await step("RuntimeClasses", () => ensureRuntimeClasses(cluster.api, classes, logger));
  const labelled = await step("label the node", () =>
    labelWhenKubeletUsesVmpod(deps, kubeletRestarted ? { timeoutMs: options.readyTimeoutMs, ...interval, ...signal } : { timeoutMs: 0 }),
  );
  return { host: changes, createdRuntimeClasses, labelled };
}

/**
 * Labels the node once its kubelet reports vmpod as its runtime, looking
 * every `intervalMs` until `timeoutMs` (0: once; Infinity: until `signal`).
 * True when the node is labelled.
 */
export async function labelWhenKubeletUsesVmpod(deps: InstallerDeps, options: { readonly timeoutMs: number; readonly intervalMs?: number; readonly signal?: AbortSignal }): Promise<boolean> {
  const cluster = deps.cluster;
  if (!cluster) return false;
  const deadline = Date.now() + options.timeoutMs;
  let told = false;
  for (;;) {
    try {
      const node = await cluster.api.getNode(cluster.nodeName);
      if (kubeletUsesVmpod(node)) {
        if (!isLabelled(node)) {
          await labelNode(cluster.api, cluster.nodeName);
          deps.logger.info("node labelled: it runs vmpod pods now", { node: cluster.nodeName, runtime: node.containerRuntimeVersion });
        }
        return true;
      }
      if (!told) {
        deps.logger.info("kubelet does not use vmpod yet: the node is labelled once it does (drain the node and restart kubelet; its drop-in is in place)", {
          node: cluster.nodeName,
          runtime: node.containerRuntimeVersion || "(not reported)",
        });
        told = true;
      }
    } catch (err) {
      // While there is time, a failed look is one more reason to look again.
      if (Date.now() >= deadline) throw err;
      deps.logger.warn("could not look at the node; trying again", { node: cluster.nodeName, err: messageOf(err) });
    }
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(options.intervalMs ?? 10_000, Math.max(0, deadline - Date.now())), options.signal);
  }
}

/** Why an uninstall would take the runtime from under kubelet; undefined when it would not. */
export async function uninstallRefusal(deps: InstallerDeps): Promise<string | undefined> {
  const cluster = deps.cluster;
  if (!cluster) return undefined;
  const node = await cluster.api.getNode(cluster.nodeName);
  return kubeletUsesVmpod(node)
    ? `kubelet on node ${cluster.nodeName} uses vmpod as its container runtime (${node.containerRuntimeVersion}): point it at another runtime first (drain the node, remove ${HOST_PATHS.kubeletDropIn}, restart kubelet), or force the uninstall`
    : undefined;
}

export async function uninstall(deps: InstallerDeps, options: UninstallOptions): Promise<void> {
  const { host, commands, logger, cluster } = deps;
  if (!options.force) {
    const refusal = await step("look at the node", () => uninstallRefusal(deps));
    if (refusal) throw failedPrecondition(refusal);
  }
  // No new vmpod pods here from now on.
  if (cluster) await step("unlabel the node", () => unlabelNode(cluster.api, cluster.nodeName));

  const socket = host.path(HOST_PATHS.socket);
  const pods = await podsOfDaemon(socket, 3_000);
  if (pods && pods.length > 0) logger.warn("vmpod still has pods: their VMs keep running without a daemon (drain the node before uninstalling)", { pods });

  if (await exists(host.path(HOST_PATHS.unit))) {
    await commands.systemctl(["disable", "--now", UNIT_NAME]).catch((err: unknown) => logger.warn("could not stop and disable vmpod", { err: messageOf(err) }));
  }
  const removed = await step("remove vmpod's files", () => removeHostFiles(host, logger));
  if (removed.unitRemoved || removed.dropInRemoved) await step("systemd", () => commands.systemctl(["daemon-reload"]));
  if (options.restartKubelet && removed.dropInRemoved) await step("restart kubelet", () => commands.systemctl(["restart", KUBELET_UNIT]));

  if (options.purge) {
    // No answer from the daemon: a process naming the state directory (a pod's QEMU or virtiofsd) says pods remain.
    const remaining = pods ?? (await processesMentioning(`${HOST_PATHS.runtimeDir}/`)).map((p) => `pid ${p.pid}`);
    if (remaining.length === 0) await step("purge vmpod's data", () => purgeDaemonData(host));
    else logger.warn("not purging vmpod's data: pods remain", { pods: remaining });
  }
  if (cluster) {
    const classes = await loadRuntimeClasses(join(options.source.packageDir, DEPLOY_FILES.runtimeClasses));
    await step("RuntimeClasses", () => removeRuntimeClassesIfLast(cluster.api, classes, cluster.nodeName, logger));
  }
  logger.info("vmpod uninstalled", { configKept: removed.configKept });
}

/** How a DaemonSet's installer ended: it uninstalled, or kept vmpod because kubelet uses it. */
export type Termination = "uninstalled" | "kept";

/**
 * The DaemonSet's life: install; label the node once kubelet uses vmpod
 * (looking every `labelIntervalMs`); and when `terminated` fires (SIGTERM:
 * the DaemonSet deleted, or its pod ended), uninstall, unless this node's
 * kubelet uses vmpod. An install that fails before then throws.
 */
export async function runUntilTerminated(deps: InstallerDeps, options: Omit<InstallOptions, "signal"> & { readonly labelIntervalMs?: number }, terminated: AbortSignal): Promise<Termination> {
  try {
    const outcome = await install(deps, { ...options, signal: terminated });
    deps.logger.info("vmpod installed", { upgraded: outcome.host.payloadChanged, runtimeClassesCreated: outcome.createdRuntimeClasses, labelled: outcome.labelled });
    if (!outcome.labelled && deps.cluster) await labelWhenKubeletUsesVmpod(deps, { timeoutMs: Infinity, intervalMs: options.labelIntervalMs ?? 15_000, signal: terminated });
    // Nothing more to do until the pod is ended.
    await new Promise<void>((resolve) => (terminated.aborted ? resolve() : terminated.addEventListener("abort", () => resolve(), { once: true })));
  } catch (err) {
    if (!terminated.aborted) throw err;
  }
  const refusal = await uninstallRefusal(deps);
  if (refusal) {
    deps.logger.info("terminating without uninstalling", { why: refusal });
    return "kept";
  }
  await uninstall(deps, { source: options.source, force: true });
  return "uninstalled";
}

async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw wrap(name, err);
  }
}
