/**
 * A container's OCI runtime spec from what kubelet asked (ContainerConfig
 * in its PodConfig) and what the image says (ImageRuntimeConfig), for a
 * pod VM's agent ("vm") or a host OCI runtime ("host"): the process, its
 * user, security, namespaces, cgroup and resources, mounts and annotations.
 * What the target cannot honour is refused here with InvalidArgument,
 * before anything is created.
 */
import { readFile } from "node:fs/promises";
import { VmpodError } from "../common/errors.js";
import type { OciLinux, OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import type { ImageRuntimeConfig } from "../image/types.js";
import { cgroupsPathFor, namespacesFor, podSysctls, resourcesFor, type HandlerKind, type PodNamespacePaths } from "./container-spec-linux.js";
import { planMounts, type PodFiles, type ResolvedMount } from "./container-spec-mounts.js";
import { apparmorFor, capabilitiesFor, maskedPathsFor, seccompFor } from "./container-spec-security.js";
import { resolveUser } from "./container-spec-user.js";
import type { ContainerConfig, PodConfig } from "./types.js";

export type { HandlerKind, PodNamespacePaths } from "./container-spec-linux.js";
export type { PodFiles, ResolvedMount } from "./container-spec-mounts.js";
export { podSysctls } from "./container-spec-linux.js";

export const OCI_VERSION = "1.1.0";
export const DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

export type OciDevice = NonNullable<OciLinux["devices"]>[number];
type DeviceRule = NonNullable<OciResources["devices"]>[number];

/** A host device given to a host container: its node in the container and its numbers. */
export interface ResolvedDevice {
  readonly device: OciDevice;
  /** The cgroup access the config asked ("rwm" or a subset). */
  readonly permissions: string;
}

export interface ContainerSpecInput {
  readonly podId: string;
  readonly pod: PodConfig;
  readonly containerId: string;
  readonly container: ContainerConfig;
  readonly image: ImageRuntimeConfig;
  /** The image's name for the annotation (default: the config's image). */
  readonly imageName?: string;
  readonly handler: HandlerKind;
  /** The container's root filesystem as the OCI runtime sees it. */
  readonly rootPath: string;
  /** The config's mounts with their sources as the OCI runtime sees them. */
  readonly mounts: readonly ResolvedMount[];
  readonly podFiles?: PodFiles;
  /** The pod's shared memory directory, bound at /dev/shm (else a tmpfs of the container's own). */
  readonly podShm?: string;
  /** Host only: the pod's namespaces to join. */
  readonly podNamespaces?: PodNamespacePaths;
  /** Host only: for PID mode TARGET. */
  readonly targetPidNamespace?: string;
  /** Host only: the config's devices, resolved (see resolveHostDevices). */
  readonly devices?: readonly ResolvedDevice[];
  /** The image's /etc/passwd and /etc/group text, when it has them. */
  readonly passwd?: string;
  readonly group?: string;
  /** Reads a localhost seccomp profile (default: the host's file). */
  readonly readProfile?: (path: string) => Promise<string>;
  /** Host only: whether the node's kernel has AppArmor (a localhost profile is refused without). */
  readonly hostAppArmor?: boolean;
}

/** Command and arguments: the config's command replaces the entrypoint and drops the image's Cmd; args alone replace Cmd. */
export function processArgs(config: Pick<ContainerConfig, "command" | "args">, image: Pick<ImageRuntimeConfig, "entrypoint" | "cmd">): string[] {
  let command = [...config.command];
  let args = [...config.args];
  if (command.length === 0) {
    if (args.length === 0) args = [...image.cmd];
    if (!(image.entrypoint.length === 1 && image.entrypoint[0] === "")) command = [...image.entrypoint];
  }
  const out = [...command, ...args];
  if (out.length === 0) throw new VmpodError("InvalidArgument", "no command specified: neither the container config nor the image has a command");
  return out;
}

/** KEY=VALUE list where a later value of a key replaces the earlier one in place. */
export function mergeEnv(...lists: readonly (readonly string[])[]): string[] {
  const out: string[] = [];
  const index = new Map<string, number>();
  for (const list of lists) {
    for (const entry of list) {
      const eq = entry.indexOf("=");
      const key = eq < 0 ? entry : entry.slice(0, eq);
      const at = index.get(key);
      if (at === undefined) {
        index.set(key, out.length);
        out.push(entry);
      } else {
        out[at] = entry;
      }
    }
  }
  return out;
}

export function containerAnnotations(input: Pick<ContainerSpecInput, "podId" | "pod" | "container" | "imageName">): Record<string, string> {
  const { pod, container } = input;
  return {
    ...container.annotations,
    "io.kubernetes.cri-o.ContainerType": "container",
    "io.kubernetes.cri-o.SandboxID": input.podId,
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.sandbox-id": input.podId,
    "io.kubernetes.cri.container-name": container.metadata.name,
    "io.kubernetes.cri.image-name": input.imageName ?? container.image,
    "io.kubernetes.cri.sandbox-name": pod.metadata.name,
    "io.kubernetes.cri.sandbox-namespace": pod.metadata.namespace,
    "io.kubernetes.cri.sandbox-uid": pod.metadata.uid,
    "io.kubernetes.pod.name": pod.metadata.name,
    "io.kubernetes.pod.namespace": pod.metadata.namespace,
    "io.kubernetes.pod.uid": pod.metadata.uid,
  };
}

export async function buildContainerSpec(input: ContainerSpecInput): Promise<OciSpec> {
  const { pod, container, image, handler } = input;
  const security = container.security;
  if (security.privileged && !pod.privileged) {
    throw new VmpodError("InvalidArgument", `container ${container.metadata.name} is privileged but its pod is not`);
  }
  if (input.rootPath === "" || !input.rootPath.startsWith("/")) throw new VmpodError("InvalidArgument", `root path ${JSON.stringify(input.rootPath)} is not absolute`);

  const user = resolveUser({
    ...(security.runAsUser === undefined ? {} : { runAsUser: security.runAsUser }),
    ...(security.runAsGroup === undefined ? {} : { runAsGroup: security.runAsGroup }),
    ...(security.runAsUsername === undefined ? {} : { runAsUsername: security.runAsUsername }),
    ...(image.user === undefined ? {} : { imageUser: image.user }),
    supplementalGroups: [...pod.supplementalGroups, ...security.supplementalGroups],
    ...(input.passwd === undefined ? {} : { passwd: input.passwd }),
    ...(input.group === undefined ? {} : { group: input.group }),
  });

  const capabilities = capabilitiesFor(security);
  const seccomp = await seccompFor(security.seccomp ?? pod.seccomp, {
    handler,
    privileged: security.privileged,
    capabilities: new Set(capabilities.bounding),
    readProfile: input.readProfile ?? ((path) => readFile(path, "utf8")),
  });
  const apparmorProfile = apparmorFor(security.apparmor, { handler, hostAppArmor: input.hostAppArmor ?? false });
  const { resources, oomScoreAdj } = resourcesFor(handler, container.resources, security.privileged);
  const sysctl = podSysctls(pod);
  const namespaces = namespacesFor({
    handler,
    modes: security.namespaces,
    ...(input.podNamespaces ? { podNamespaces: input.podNamespaces } : {}),
    ...(input.targetPidNamespace === undefined ? {} : { targetPidNamespace: input.targetPidNamespace }),
  });
  const devices = devicesFor(input);
  if (devices.rules.length > 0) resources.devices = [...(resources.devices ?? []), ...devices.rules];

  const hostNetwork = security.namespaces.network === "NODE";
  const shm = input.podShm ?? (handler === "host" && security.namespaces.ipc === "NODE" ? "/dev/shm" : undefined);
  const mountPlan = planMounts({
    privileged: security.privileged,
    readonlyRootfs: security.readonlyRootfs,
    mounts: input.mounts,
    configPaths: container.mounts.map((m) => m.containerPath),
    ...(input.podFiles ? { podFiles: input.podFiles } : {}),
    ...(shm === undefined ? {} : { shm }),
  });

  const process: OciProcess = {
    terminal: container.tty,
    user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
    args: processArgs(container, image),
    env: mergeEnv(
      [DEFAULT_PATH_ENV],
      container.tty ? ["TERM=xterm"] : [],
      [`HOSTNAME=${pod.hostname}`],
      image.env,
      container.envs.map((e) => `${e.key}=${e.value}`),
    ),
    cwd: container.workingDir || image.workingDir || "/",
    capabilities,
    noNewPrivileges: security.noNewPrivs,
    ...(apparmorProfile === undefined ? {} : { apparmorProfile }),
    ...(oomScoreAdj === undefined ? {} : { oomScoreAdj }),
  };

  const masks = maskedPathsFor(security);
  return {
    ociVersion: OCI_VERSION,
    process,
    root: { path: input.rootPath, readonly: security.readonlyRootfs },
    ...(hostNetwork && handler === "host" ? {} : { hostname: pod.hostname }),
    mounts: mountPlan.mounts,
    annotations: containerAnnotations(input),
    linux: {
      namespaces,
      cgroupsPath: cgroupsPathFor(handler, pod, input.podId, input.containerId),
      resources,
      ...(devices.nodes.length > 0 ? { devices: devices.nodes } : {}),
      // In a pod VM the containers share the guest's network and IPC
      // namespaces: each container sets the pod's sysctls there again, to the same values.
      ...(Object.keys(sysctl).length > 0 ? { sysctl } : {}),
      ...(seccomp ? { seccomp } : {}),
      ...(mountPlan.rootfsPropagation === undefined ? {} : { rootfsPropagation: mountPlan.rootfsPropagation }),
      maskedPaths: masks.maskedPaths,
      readonlyPaths: masks.readonlyPaths,
    },
  };
}

function devicesFor(input: ContainerSpecInput): { nodes: OciDevice[]; rules: DeviceRule[] } {
  const asked = input.container.devices;
  if (asked.length === 0) return { nodes: [], rules: [] };
  if (input.handler === "vm") {
    throw new VmpodError("InvalidArgument", `host devices (${asked.map((d) => d.hostPath).join(", ")}) cannot be given to a container in a pod VM`);
  }
  const resolved = input.devices ?? [];
  if (resolved.length !== asked.length) throw new VmpodError("InvalidArgument", "the container's devices were not resolved on the host");
  return {
    nodes: resolved.map((d) => ({ ...d.device })),
    rules: resolved.map((d) => ({ allow: true, type: d.device.type, major: d.device.major, minor: d.device.minor, access: d.permissions || "rwm" })),
  };
}
