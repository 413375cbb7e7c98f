/**
 * The `linux` part of a container's OCI spec that depends on where it runs:
 * namespaces, cgroup path, resources and sysctls.
 *
 * In a pod VM the guest is the pod: containers share its network, IPC and
 * UTS namespaces (the agent would drop such entries anyway), get their own
 * mount, cgroup and (unless the pod shares one) PID namespace; with PID mode
 * POD a container has no PID namespace of its own, so every such container
 * of the pod sees the others (and the guest's agent) in the guest's. The
 * guest's CPU numbers are not the host's, so cpusets stay on the host.
 *
 * On the host (the runc handler) containers join the pod's namespaces by
 * path, or the node's for NODE mode; cgroups go under the pod's cgroup
 * parent (cgroupfs), and a negative oom_score_adj is raised to 0, since the
 * daemon cannot lower scores (no CAP_SYS_RESOURCE on our hosts).
 */
import { VmpodError } from "../common/errors.js";
import type { OciLinux, OciResources } from "../common/oci-spec.js";
import type { LinuxResources, NamespaceMode, PodConfig } from "./types.js";

export type HandlerKind = "vm" | "host";

/** The pod's namespaces on the host, as /proc/PID/ns/... or bind-mounted paths. */
export interface PodNamespacePaths {
  readonly network?: string;
  readonly ipc?: string;
  readonly uts?: string;
  readonly pid?: string;
}

export interface NamespaceRequest {
  readonly handler: HandlerKind;
  readonly modes: { readonly network: NamespaceMode; readonly pid: NamespaceMode; readonly ipc: NamespaceMode };
  readonly podNamespaces?: PodNamespacePaths;
  /** The PID namespace of the target container, for PID mode TARGET (host only). */
  readonly targetPidNamespace?: string;
}

export function namespacesFor(req: NamespaceRequest): NonNullable<OciLinux["namespaces"]> {
  const { modes } = req;
  if (req.handler === "vm") {
    if (modes.pid === "NODE") throw new VmpodError("InvalidArgument", "a container in a pod VM cannot share the node's PID namespace (hostPID): use the runc handler");
    if (modes.ipc === "NODE") throw new VmpodError("InvalidArgument", "a container in a pod VM cannot share the node's IPC namespace (hostIPC): use the runc handler");
    if (modes.pid === "TARGET") throw new VmpodError("InvalidArgument", "PID namespace mode TARGET is not supported in a pod VM");
    const out: NonNullable<OciLinux["namespaces"]> = [];
    if (modes.pid === "CONTAINER") out.push({ type: "pid" });
    out.push({ type: "mount" }, { type: "cgroup" });
    return out;
  }
  const paths = req.podNamespaces ?? {};
  const join = (type: string, key: keyof PodNamespacePaths): { type: string; path: string } => {
    const path = paths[key];
    if (path === undefined || path === "") throw new VmpodError("InvalidArgument", `the pod's ${key} namespace has no path to join`);
    return { type, path };
  };
  const out: NonNullable<OciLinux["namespaces"]> = [];
  if (modes.network === "CONTAINER") out.push({ type: "network" }, { type: "uts" });
  else if (modes.network !== "NODE") out.push(join("network", "network"), join("uts", "uts"));
  if (modes.ipc === "CONTAINER") out.push({ type: "ipc" });
  else if (modes.ipc !== "NODE") out.push(join("ipc", "ipc"));
  switch (modes.pid) {
    case "NODE":
      break;
    case "POD":
      out.push(join("pid", "pid"));
      break;
    case "TARGET":
      if (req.targetPidNamespace === undefined || req.targetPidNamespace === "") throw new VmpodError("InvalidArgument", "PID namespace mode TARGET without the target's namespace");
      out.push({ type: "pid", path: req.targetPidNamespace });
      break;
    case "CONTAINER":
      out.push({ type: "pid" });
      break;
  }
  out.push({ type: "mount" });
  return out;
}

const SAFE_ID_COMPONENT = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Where the container's cgroup lives: in the guest's own hierarchy, or under the pod's parent on the host. */
export function cgroupsPathFor(handler: HandlerKind, pod: PodConfig, podId: string, containerId: string): string {
  if (!SAFE_ID_COMPONENT.test(containerId)) throw new VmpodError("InvalidArgument", `bad container id ${JSON.stringify(containerId)}`);
  if (handler === "vm") return `/vmpod/${containerId}`;
  const parent = pod.cgroupParent;
  if (parent === "") return `/vmpod/${podId}/${containerId}`;
  if (!parent.startsWith("/") || parent.includes(":") || parent.endsWith(".slice") || parent.split("/").some((c) => c === "..")) {
    throw new VmpodError("InvalidArgument", `cgroup parent ${JSON.stringify(parent)} is not a cgroupfs path (vmpod uses the cgroupfs driver)`);
  }
  return `${parent.replace(/\/+$/, "")}/${containerId}`;
}

/** OCI resources from the CRI's, and the oom_score_adj the process gets. */
export function resourcesFor(handler: HandlerKind, r: LinuxResources | undefined, privileged: boolean): { resources: OciResources; oomScoreAdj?: number } {
  const resources: OciResources = {
    devices: privileged ? [{ allow: true, access: "rwm" }] : [{ allow: false, access: "rwm" }],
  };
  if (r === undefined) return { resources };
  const cpu: NonNullable<OciResources["cpu"]> = {};
  if (r.cpuShares) cpu.shares = r.cpuShares;
  if (r.cpuQuota) cpu.quota = r.cpuQuota;
  if (r.cpuPeriod) cpu.period = r.cpuPeriod;
  if (handler === "host") {
    if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
    if (r.cpusetMems) cpu.mems = r.cpusetMems;
  }
  if (Object.keys(cpu).length > 0) resources.cpu = cpu;
  const memory: NonNullable<OciResources["memory"]> = {};
  if (r.memoryLimitBytes) memory.limit = r.memoryLimitBytes;
  if (r.memorySwapLimitBytes) memory.swap = r.memorySwapLimitBytes;
  if (Object.keys(memory).length > 0) resources.memory = memory;

  const hugepages = (r.hugepageLimits ?? []).filter((h) => h.pageSize !== "");
  if (handler === "host") {
    if (hugepages.length > 0) resources.hugepageLimits = hugepages.map((h) => ({ pageSize: h.pageSize, limit: h.limit }));
    if (r.unified && Object.keys(r.unified).length > 0) resources.unified = { ...r.unified };
  } else {
    const asked = hugepages.filter((h) => h.limit > 0);
    if (asked.length > 0) throw new VmpodError("InvalidArgument", `hugepages (${asked.map((h) => h.pageSize).join(", ")}) are not available in a pod VM`);
    if (r.unified && Object.keys(r.unified).length > 0) {
      throw new VmpodError("InvalidArgument", `unified cgroup settings (${Object.keys(r.unified).join(", ")}) cannot be passed to a pod VM's agent`);
    }
  }
  if (r.oomScoreAdj === undefined) return { resources };
  if (!Number.isInteger(r.oomScoreAdj) || r.oomScoreAdj < -1000 || r.oomScoreAdj > 1000) throw new VmpodError("InvalidArgument", `oom_score_adj ${r.oomScoreAdj} is outside -1000..1000`);
  return { resources, oomScoreAdj: handler === "host" ? Math.max(0, r.oomScoreAdj) : r.oomScoreAdj };
}

const IPC_SYSCTLS = new Set(["kernel.shm_rmid_forced", "kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"]);

/** "net/ipv4/conf/eth0.100/forwarding" → "net.ipv4.conf.eth0/100.forwarding", as kubelet reads the slash form. */
export function normalizeSysctlName(name: string): string {
  if (!name.includes("/")) return name;
  return name.replace(/[./]/g, (c) => (c === "/" ? "." : "/"));
}

/**
 * The pod's sysctls, by dotted name, once checked: only namespaced ones
 * (IPC: kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*; network: net.*),
 * and not in a namespace the pod shares with the node.
 */
export function podSysctls(pod: PodConfig): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [raw, value] of Object.entries(pod.sysctls)) {
    const name = normalizeSysctlName(raw);
    if (IPC_SYSCTLS.has(name) || name.startsWith("fs.mqueue.")) {
      if (pod.namespaces.ipc === "NODE") throw new VmpodError("InvalidArgument", `sysctl ${raw} is not allowed: the pod shares the node's IPC namespace`);
    } else if (name.startsWith("net.")) {
      if (pod.namespaces.network === "NODE") throw new VmpodError("InvalidArgument", `sysctl ${raw} is not allowed: the pod shares the node's network namespace`);
    } else {
      throw new VmpodError("InvalidArgument", `sysctl ${raw} is not namespaced: it would change the whole node`);
    }
    out[name] = value;
  }
  return out;
}
