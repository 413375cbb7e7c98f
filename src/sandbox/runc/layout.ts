/**
 * Where a runc pod keeps its host state, all under the handler's state root,
 * so that a restarted daemon finds everything again by listing directories
 * and stopping a pod is removing one tree:
 *
 *     <stateRoot>/<podId>/
 *       pod.json                 what recovery needs (hostname)
 *       ns/net ns/ipc ns/uts     the pod's namespaces, bind-mounted (nsfs)
 *       runtime/                 the OCI runtime's --root for this pod
 *       containers/<cid>/
 *         bundle/config.json     the spec as the runtime reads it
 *         bundle/rootfs          the overlay of the image's layers
 *         stdout stderr          the container's output, appended by its supervisor
 *         stdout.offset ...      how far vmpod has read each
 *         stdin                  a FIFO, when the container takes input
 *         supervisor.pid         the supervisor's pid
 *         pid                    the container's first process (runtime's --pid-file)
 *         exit                   "<status> <oom kills>", written once it exited
 *         exec/<execId>.json     an exec's process while it runs
 */
import { join } from "node:path";

export interface PodPaths {
  readonly root: string;
  readonly podFile: string;
  readonly nsDir: string;
  readonly net: string;
  readonly ipc: string;
  readonly uts: string;
  readonly runtimeRoot: string;
  readonly containers: string;
}

export interface ContainerPaths {
  readonly dir: string;
  readonly bundle: string;
  readonly config: string;
  readonly rootfs: string;
  readonly stdout: string;
  readonly stderr: string;
  readonly stdin: string;
  readonly supervisorPid: string;
  readonly pid: string;
  readonly exit: string;
  readonly execDir: string;
}

export function podPaths(stateRoot: string, podId: string): PodPaths {
  const root = join(stateRoot, podId);
  const nsDir = join(root, "ns");
  return {
    root,
    podFile: join(root, "pod.json"),
    nsDir,
    net: join(nsDir, "net"),
    ipc: join(nsDir, "ipc"),
    uts: join(nsDir, "uts"),
    runtimeRoot: join(root, "runtime"),
    containers: join(root, "containers"),
  };
}

export function containerPaths(pod: PodPaths, containerId: string): ContainerPaths {
  const dir = join(pod.containers, containerId);
  const bundle = join(dir, "bundle");
  return {
    dir,
    bundle,
    config: join(bundle, "config.json"),
    rootfs: join(bundle, "rootfs"),
    stdout: join(dir, "stdout"),
    stderr: join(dir, "stderr"),
    stdin: join(dir, "stdin"),
    supervisorPid: join(dir, "supervisor.pid"),
    pid: join(dir, "pid"),
    exit: join(dir, "exit"),
    execDir: join(dir, "exec"),
  };
}

/** The offset file beside an output file. */
export function offsetPath(outputPath: string): string {
  return `${outputPath}.offset`;
}
