/**
 * Containers between the CRI and the sandbox layer: ContainerConfig checked
 * (metadata, image, log path below the pod's log directory, absolute mount
 * paths) and turned into the domain's ContainerConfig, and a
 * ContainerStatus back into the CRI's status, list item and filter.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  ContainerState as CriContainerState,
  MountPropagation,
  Signal,
  type ContainerConfig as CriContainerConfig,
  type ContainerFilter as CriContainerFilter,
  type ContainerSchema,
  type ContainerStatsFilter,
  type ContainerStatusSchema,
  type LinuxContainerSecurityContext,
  type MountSchema,
} from "../gen/cri/api_pb.js";
import { VmpodError } from "../common/errors.js";
import type { ContainerFilter } from "../sandbox/runtime.js";
import type { ContainerConfig, ContainerSecurity, ContainerState, ContainerStatus, Mount } from "../sandbox/types.js";
import { jsonReplacer } from "./translate-pod.js";
import { ociResourcesToCri, resourcesFromCri } from "./translate-resources.js";
import { idList, namespacesFromCri, optionalId, profileFromCri } from "./translate-security.js";
import { absolutePath, invalid, nonEmpty, relativePath, required } from "./validate.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

const PROPAGATION: Readonly<Record<MountPropagation, Mount["propagation"]>> = {
  [MountPropagation.PROPAGATION_PRIVATE]: "private",
  [MountPropagation.PROPAGATION_HOST_TO_CONTAINER]: "host-to-container",
  [MountPropagation.PROPAGATION_BIDIRECTIONAL]: "bidirectional",
};

const PROPAGATION_BACK: Readonly<Record<Mount["propagation"], MountPropagation>> = {
  private: MountPropagation.PROPAGATION_PRIVATE,
  "host-to-container": MountPropagation.PROPAGATION_HOST_TO_CONTAINER,
  bidirectional: MountPropagation.PROPAGATION_BIDIRECTIONAL,
};

const STATES: Readonly<Record<ContainerState, CriContainerState>> = {
  created: CriContainerState.CONTAINER_CREATED,
  running: CriContainerState.CONTAINER_RUNNING,
  exited: CriContainerState.CONTAINER_EXITED,
  unknown: CriContainerState.CONTAINER_UNKNOWN,
};

export function containerStateToCri(state: ContainerState): CriContainerState {
  return STATES[state];
}

export function containerStateFromCri(state: CriContainerState): ContainerState {
  switch (state) {
    case CriContainerState.CONTAINER_CREATED:
      return "created";
    case CriContainerState.CONTAINER_RUNNING:
      return "running";
    case CriContainerState.CONTAINER_EXITED:
      return "exited";
    default:
      return "unknown";
  }
}

/** "SIGTERM", "SIGRTMIN+3", "SIGRTMAX-2" from the CRI's enum; undefined for the runtime's default. */
export function signalName(signal: Signal): string | undefined {
  if (signal === Signal.RUNTIME_DEFAULT) return undefined;
  const name = Signal[signal] as string | undefined;
  if (name === undefined) throw invalid("config.stop_signal", `unknown signal ${signal}`);
  return name.replace(/^SIGRTMINPLUS(\d+)$/, "SIGRTMIN+$1").replace(/^SIGRTMAXMINUS(\d+)$/, "SIGRTMAX-$1");
}

export function signalFromName(name: string | undefined): Signal {
  if (name === undefined) return Signal.RUNTIME_DEFAULT;
  const key = name.replace(/^SIGRTMIN\+(\d+)$/, "SIGRTMINPLUS$1").replace(/^SIGRTMAX-(\d+)$/, "SIGRTMAXMINUS$1");
  const value = (Signal as unknown as Record<string, number | undefined>)[key];
  return value ?? Signal.RUNTIME_DEFAULT;
}

function securityFromCri(s: LinuxContainerSecurityContext | undefined, field: string): ContainerSecurity {
  if (s === undefined) return { privileged: false, namespaces: { network: "POD", pid: "POD", ipc: "POD" }, readonlyRootfs: false, supplementalGroups: [], noNewPrivs: false };
  const out: Mutable<ContainerSecurity> = {
    privileged: s.privileged,
    namespaces: namespacesFromCri(s.namespaceOptions, `${field}.namespace_options`),
    readonlyRootfs: s.readonlyRootfs,
    supplementalGroups: idList(s.supplementalGroups, `${field}.supplemental_groups`),
    noNewPrivs: s.noNewPrivs,
    maskedPaths: [...s.maskedPaths],
    readonlyPaths: [...s.readonlyPaths],
  };
  if (s.capabilities !== undefined) {
    out.capabilities = { add: [...s.capabilities.addCapabilities], drop: [...s.capabilities.dropCapabilities], addAmbient: [...s.capabilities.addAmbientCapabilities] };
  }
  const user = optionalId(s.runAsUser, `${field}.run_as_user`);
  const group = optionalId(s.runAsGroup, `${field}.run_as_group`);
  if (group !== undefined && user === undefined && s.runAsUsername === "") throw invalid(`${field}.run_as_group`, "is set without run_as_user or run_as_username");
  if (user !== undefined && s.runAsUsername !== "") throw invalid(`${field}.run_as_username`, "cannot be set with run_as_user");
  if (user !== undefined) out.runAsUser = user;
  if (group !== undefined) out.runAsGroup = group;
  if (s.runAsUsername !== "") out.runAsUsername = s.runAsUsername;
  const seccomp = profileFromCri(s.seccomp, s.seccompProfilePath, `${field}.seccomp`);
  if (seccomp !== undefined) out.seccomp = seccomp;
  const apparmor = profileFromCri(s.apparmor, s.apparmorProfile, `${field}.apparmor`);
  if (apparmor !== undefined) out.apparmor = apparmor;
  return out;
}

function mountFromCri(m: CriContainerConfig["mounts"][number], field: string): Mount {
  absolutePath(m.containerPath, `${field}.container_path`);
  if (m.image !== undefined && m.image.image !== "") throw new VmpodError("Unimplemented", `${field}.image: image volumes are not supported`);
  absolutePath(m.hostPath, `${field}.host_path`);
  if (m.uidMappings.length > 0 || m.gidMappings.length > 0) throw new VmpodError("InvalidArgument", `${field}: id-mapped mounts are not supported`);
  if (m.recursiveReadOnly) throw new VmpodError("InvalidArgument", `${field}.recursive_read_only: recursive read-only mounts are not supported`);
  const propagation = PROPAGATION[m.propagation];
  if (propagation === undefined) throw invalid(`${field}.propagation`, `unknown propagation ${m.propagation}`);
  return { containerPath: m.containerPath, hostPath: m.hostPath, readonly: m.readonly, selinuxRelabel: m.selinuxRelabel, propagation };
}

/** Checks a CreateContainer config and translates it. */
export function containerConfigFromCri(config: CriContainerConfig | undefined, field = "config"): ContainerConfig {
  const c = required(config, field);
  const m = required(c.metadata, `${field}.metadata`);
  const image = required(c.image, `${field}.image`);
  nonEmpty(image.image, `${field}.image.image`);
  if (c.CDIDevices.length > 0) throw new VmpodError("Unimplemented", `${field}.CDI_devices: CDI devices are not supported`);
  if (c.workingDir !== "") absolutePath(c.workingDir, `${field}.working_dir`);
  const envs = c.envs.map((e, i) => {
    if (e.key === "" || e.key.includes("=")) throw invalid(`${field}.envs[${i}].key`, `${JSON.stringify(e.key)} is not a variable name`);
    return { key: e.key, value: Buffer.from(e.value).toString("utf8") };
  });
  const out: Mutable<ContainerConfig> = {
    metadata: { name: nonEmpty(m.name, `${field}.metadata.name`), attempt: m.attempt },
    image: image.image,
    command: [...c.command],
    args: [...c.args],
    workingDir: c.workingDir,
    envs,
    mounts: c.mounts.map((mount, i) => mountFromCri(mount, `${field}.mounts[${i}]`)),
    devices: c.devices.map((d, i) => {
      absolutePath(d.containerPath, `${field}.devices[${i}].container_path`);
      absolutePath(d.hostPath, `${field}.devices[${i}].host_path`);
      if (!/^[rwm]*$/.test(d.permissions)) throw invalid(`${field}.devices[${i}].permissions`, `${JSON.stringify(d.permissions)} is not a combination of r, w and m`);
      return { containerPath: d.containerPath, hostPath: d.hostPath, permissions: d.permissions };
    }),
    labels: { ...c.labels },
    annotations: { ...c.annotations },
    logPath: c.logPath === "" ? "" : relativePath(c.logPath, `${field}.log_path`),
    stdin: c.stdin,
    stdinOnce: c.stdinOnce,
    tty: c.tty,
    security: securityFromCri(c.linux?.securityContext, `${field}.linux.security_context`),
  };
  if (c.linux?.resources !== undefined) out.resources = resourcesFromCri(c.linux.resources, `${field}.linux.resources`);
  const stop = signalName(c.stopSignal);
  if (stop !== undefined) out.stopSignal = stop;
  return out;
}

function mountToCri(m: Mount): MessageInitShape<typeof MountSchema> {
  return { containerPath: m.containerPath, hostPath: m.hostPath, readonly: m.readonly, selinuxRelabel: m.selinuxRelabel, propagation: PROPAGATION_BACK[m.propagation] };
}

export function containerStatusToCri(c: ContainerStatus): MessageInitShape<typeof ContainerStatusSchema> {
  return {
    id: c.id,
    metadata: { name: c.config.metadata.name, attempt: c.config.metadata.attempt },
    state: containerStateToCri(c.state),
    createdAt: c.createdAt,
    startedAt: c.startedAt,
    finishedAt: c.finishedAt,
    exitCode: c.exitCode,
    image: { image: c.config.image, userSpecifiedImage: c.config.image },
    imageRef: c.imageRef,
    imageId: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: { ...c.config.labels },
    annotations: { ...c.config.annotations },
    mounts: c.config.mounts.map(mountToCri),
    logPath: c.logPath,
    ...(c.resources === undefined ? {} : { resources: { linux: ociResourcesToCri(c.resources) } }),
    stopSignal: signalFromName(c.config.stopSignal),
  };
}

export function containerToCri(c: ContainerStatus): MessageInitShape<typeof ContainerSchema> {
  return {
    id: c.id,
    podSandboxId: c.podId,
    metadata: { name: c.config.metadata.name, attempt: c.config.metadata.attempt },
    image: { image: c.config.image, userSpecifiedImage: c.config.image },
    imageRef: c.imageRef,
    imageId: c.imageId,
    state: containerStateToCri(c.state),
    createdAt: c.createdAt,
    labels: { ...c.config.labels },
    annotations: { ...c.config.annotations },
  };
}

/** Verbose info: one key, "info", holding JSON (what crictl inspect shows). */
export function containerInfoToCri(c: ContainerStatus): Record<string, string> {
  return { info: JSON.stringify({ ...c.info, podSandboxId: c.podId, config: c.config, resources: c.resources }, jsonReplacer) };
}

export function containerFilterFromCri(filter: CriContainerFilter | ContainerStatsFilter | undefined): ContainerFilter | undefined {
  if (filter === undefined) return undefined;
  const out: Mutable<ContainerFilter> = {};
  if (filter.id !== "") out.id = filter.id;
  if (filter.podSandboxId !== "") out.podId = filter.podSandboxId;
  if ("state" in filter && filter.state !== undefined) out.state = containerStateFromCri(filter.state.state);
  if (Object.keys(filter.labelSelector).length > 0) out.labels = { ...filter.labelSelector };
  return out;
}

