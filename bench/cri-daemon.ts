/**
 * What the CRI benchmarks share: a daemon (as the e2e tests run it), a
 * local registry with the busybox test image pulled into it, the requests
 * kubelet would send for a pod and a container, and the daemon's VM
 * template built before anything is timed.
 */
import { join } from "node:path";
import { startDaemon, type Daemon, type DaemonOptions } from "../e2e/daemon.js";
import { pushBusybox } from "../test/helpers/registry/images.js";
import { startRegistry } from "../test/helpers/registry/server.js";

export interface BenchDaemon {
  readonly daemon: Daemon;
  readonly image: string;
}

export async function withDaemon<T>(fn: (d: BenchDaemon) => Promise<T>, options: DaemonOptions = {}): Promise<T> {
  const registry = await startRegistry();
  try {
    const pushed = await pushBusybox(registry, { repository: "bench/busybox", tag: "1" });
    const daemon = await startDaemon(options);
    try {
      await daemon.client.images.pullImage({ image: { image: pushed.reference } });
      return await fn({ daemon, image: pushed.reference });
    } finally {
      await daemon.dispose();
    }
  } finally {
    await registry.stop();
  }
}

export function podConfig(name: string, logDir: string) {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: "bench", attempt: 0 },
    hostname: name,
    logDirectory: join(logDir, name),
    linux: { securityContext: { namespaceOptions: { pid: 1 } } },
  };
}

export function containerConfig(name: string, image: string, command: string[]) {
  return { metadata: { name, attempt: 0 }, image: { image }, command, logPath: `${name}.log`, linux: { securityContext: { namespaceOptions: { pid: 1 } } } };
}

/** Configuration that turns the daemon's VM templates off: every pod boots cold. */
export const NO_TEMPLATES_TOML = "[factory]\nenable_template = false\n";

const TEMPLATE_BUILT = `"msg":"vm template built"`;

/**
 * Has the daemon's VM template of its default shape ready before anything
 * is timed. A first pod is started: restored from the template, the
 * template is there; booted cold (it asked before the template existed),
 * the build it started, or the daemon's warm-up, is waited for in the
 * daemon's log (at most 10 minutes). The pod is removed.
 */
export async function warmTemplate(daemon: Daemon): Promise<void> {
  const rt = daemon.client.runtime;
  const { podSandboxId } = await rt.runPodSandbox({ config: podConfig("bench-warm", daemon.logDir) });
  try {
    const info = (await rt.podSandboxStatus({ podSandboxId, verbose: true })).info["info"] ?? "{}";
    if ((JSON.parse(info) as { template?: unknown }).template !== undefined) return;
    const deadline = Date.now() + 600_000;
    while (!daemon.output().includes(TEMPLATE_BUILT)) {
      if (daemon.output().includes(`"msg":"vm template build failed"`)) throw new Error(`the daemon could not build its VM template:\n${daemon.output().slice(-4000)}`);
      if (Date.now() > deadline) throw new Error("the daemon's VM template was not built in 10 minutes");
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    await rt.stopPodSandbox({ podSandboxId });
    await rt.removePodSandbox({ podSandboxId });
  }
}
