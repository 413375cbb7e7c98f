/** Pods, containers and images for the container spec tests: the smallest configs kubelet sends. */
import type { ImageRuntimeConfig } from "../../../src/image/types.js";
import type { ContainerSpecInput } from "../../../src/sandbox/container-spec.js";
import type { ContainerConfig, ContainerSecurity, PodConfig } from "../../../src/sandbox/types.js";

export const POD_ID = "p".repeat(64);
export const CONTAINER_ID = "c".repeat(64);

export function pod(over: Partial<PodConfig> = {}): PodConfig {
  return {
    metadata: { name: "web", uid: "uid-1", namespace: "default", attempt: 0 },
    hostname: "web-host",
    logDirectory: "/var/log/pods/default_web_uid-1",
    portMappings: [],
    labels: {},
    annotations: {},
    cgroupParent: "/kubepods/besteffort/poduid-1",
    namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" },
    sysctls: {},
    privileged: false,
    supplementalGroups: [],
    readonlyRootfs: false,
    ...over,
  };
}

export function security(over: Partial<ContainerSecurity> = {}): ContainerSecurity {
  return {
    privileged: false,
    namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" },
    readonlyRootfs: false,
    supplementalGroups: [],
    noNewPrivs: false,
    ...over,
  };
}

export function container(over: Partial<ContainerConfig> = {}, sec: Partial<ContainerSecurity> = {}): ContainerConfig {
  return {
    metadata: { name: "app", attempt: 0 },
    image: "docker.io/library/busybox:latest",
    command: [],
    args: [],
    workingDir: "",
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: {},
    logPath: "app/0.log",
    stdin: false,
    stdinOnce: false,
    tty: false,
    security: security(sec),
    ...over,
  };
}

export function image(over: Partial<ImageRuntimeConfig> = {}): ImageRuntimeConfig {
  return { env: ["PATH=/bin"], entrypoint: [], cmd: ["sh"], exposedPorts: [], volumes: [], labels: {}, ...over };
}

export function input(over: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return {
    podId: POD_ID,
    pod: pod(),
    containerId: CONTAINER_ID,
    container: container(),
    image: image(),
    handler: "vm",
    rootPath: "/run/vmpod/containers/c/rootfs",
    mounts: [],
    readProfile: () => Promise.reject(new Error("no profile files in this test")),
    ...over,
  };
}

export function hostInput(over: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return input({
    handler: "host",
    rootPath: "/var/lib/vmpod/rootfs/c",
    podNamespaces: { network: "/proc/42/ns/net", ipc: "/proc/42/ns/ipc", uts: "/proc/42/ns/uts", pid: "/proc/42/ns/pid" },
    ...over,
  });
}

export const PASSWD = "root:x:0:0:root:/root:/bin/sh\n# a comment\napp:x:1000:1001:App:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n";
export const GROUP = "root:x:0:\nwheel:x:10:root,app\napp:x:1001:\naudio:x:29:app\nnogroup:x:65534:\n";
