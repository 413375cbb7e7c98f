/**
 * A runc pod's network, IPC and UTS namespaces, kept without any process:
 * util-linux `unshare --net=FILE --ipc=FILE --uts=FILE` creates them and
 * bind-mounts each onto a file under the pod's state directory, which keeps
 * it alive (an nsfs bind mount holds a reference) until it is unmounted.
 * The hostname is set in the new UTS namespace and the loopback brought up
 * in the new network namespace; containers join them by path (the spec's
 * `linux.namespaces[].path`), CNI can take the network one as CNI_NETNS.
 *
 * A PID namespace cannot be kept that way (it dies with its first process),
 * which is why a pod sharing one PID namespace is not offered here.
 */
import { mkdir, rm, writeFile } from "node:fs/promises";
import { VmpodError, messageOf } from "../../common/errors.js";
import { run } from "../../common/exec.js";
import { bindMount, mountPoints, unmount } from "../../common/mount.js";
import type { PodPaths } from "./layout.js";

export interface NamespaceTools {
  /** util-linux unshare(1) and nsenter(1), iproute2's ip(8), and busybox (for hostname). */
  readonly unshare: string;
  readonly nsenter: string;
  readonly ip: string;
  readonly busybox: string;
}

export const DEFAULT_NAMESPACE_TOOLS: NamespaceTools = { unshare: "unshare", nsenter: "nsenter", ip: "ip", busybox: "/bin/busybox" };

/** Makes the pod's namespaces, named by their files in `paths.nsDir`. Cleans up after itself on failure. */
export async function createPodNamespaces(paths: PodPaths, hostname: string, tools: NamespaceTools, options: { readonly netnsPath?: string } = {}): Promise<void> {
  await mkdir(paths.nsDir, { recursive: true, mode: 0o700 });
  try {
    for (const f of [paths.net, paths.ipc, paths.uts]) await writeFile(f, "", { mode: 0o600 });
    // With a network made by CNI the pod joins its netns; without, it gets a new one with loopback alone.
    const net = options.netnsPath === undefined ? [`--net=${paths.net}`] : [];
    await run(tools.unshare, [...net, `--ipc=${paths.ipc}`, `--uts=${paths.uts}`, "--", tools.busybox, "hostname", hostname], {
      whenMissing: "install util-linux",
    });
    if (options.netnsPath === undefined) {
      await run(tools.nsenter, [`--net=${paths.net}`, "--", tools.ip, "link", "set", "lo", "up"], { whenMissing: "install iproute2" });
    } else {
      await bindMount(options.netnsPath, paths.net);
    }
  } catch (err) {
    await removePodNamespaces(paths).catch(() => undefined);
    throw new VmpodError("Internal", "create pod namespaces", { cause: err });
  }
}

/** True when all three namespace files are still mounted. */
export async function podNamespacesAlive(paths: PodPaths): Promise<boolean> {
  const mounted = new Set(await mountPoints());
  return [paths.net, paths.ipc, paths.uts].every((p) => mounted.has(p));
}

/** Unmounts the namespace files (the namespaces go with their last user) and removes them. Idempotent. */
export async function removePodNamespaces(paths: PodPaths): Promise<void> {
  const failures: unknown[] = [];
  for (const f of [paths.net, paths.ipc, paths.uts]) await unmount(f).catch((err: unknown) => failures.push(err));
  await rm(paths.nsDir, { recursive: true, force: true }).catch((err: unknown) => failures.push(err));
  if (failures.length > 0) throw new VmpodError("Internal", "remove pod namespaces", { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
}
