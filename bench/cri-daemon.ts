/**
 * What the CRI benchmarks share: a daemon (as the e2e tests run it), a
 * local registry with the busybox test image pulled into it, and the
 * requests kubelet would send for a pod and a container.
 */
import { join } from "node:path";
import { startDaemon, type Daemon } from "../e2e/daemon.js";
import { pushBusybox } from "../test/helpers/registry/images.js";
import { startRegistry } from "../test/helpers/registry/server.js";

export interface BenchDaemon {
  readonly daemon: Daemon;
  readonly image: string;
}

export async function withDaemon<T>(fn: (d: BenchDaemon) => Promise<T>): Promise<T> {
  const registry = await startRegistry();
  try {
    const pushed = await pushBusybox(registry, { repository: "bench/busybox", tag: "1" });
    const daemon = await startDaemon();
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
