/**
 * The config.json a host container's runtime reads: the spec the sandbox
 * layer built, completed for this pod. The root is the bundle's rootfs (the
 * overlay of the image's layers); network, UTS and IPC namespace entries
 * without a path join the pod's namespaces (entries the spec leaves out,
 * the NODE modes, stay out: the host's), and a container joining the pod's
 * UTS namespace does not set the hostname (the pod's is there); a negative oom_score_adj is raised
 * to 0, since the daemon lacks CAP_SYS_RESOURCE on the hosts it runs on and
 * the runtime would fail to start the container; the cgroup path defaults
 * to /vmpod/<pod>/<container> and must be a cgroupfs path; the CRI-O
 * container-type and sandbox-id annotations are there even if the builder
 * forgot them.
 */
import { VmpodError } from "../../common/errors.js";
import type { OciSpec } from "../../common/oci-spec.js";
import { checkCgroupsPath } from "./cgroups.js";

export interface PodNamespaceFiles {
  readonly network: string;
  readonly ipc: string;
  readonly uts: string;
}

export interface BundleSpecInput {
  readonly podId: string;
  readonly containerId: string;
  readonly rootfs: string;
  readonly readonlyRootfs: boolean;
  readonly namespaces: PodNamespaceFiles;
}

export function bundleSpec(spec: OciSpec, input: BundleSpecInput): OciSpec {
  if (!spec.process) throw new VmpodError("InvalidArgument", `container ${input.containerId} has no process in its spec`);
  const process = { ...spec.process };
  if (process.oomScoreAdj !== undefined && process.oomScoreAdj < 0) process.oomScoreAdj = 0;
  const joined: Record<string, string> = { network: input.namespaces.network, ipc: input.namespaces.ipc, uts: input.namespaces.uts };
  const linux = { ...(spec.linux ?? {}) };
  linux.namespaces = (linux.namespaces ?? [{ type: "pid" }, { type: "mount" }, { type: "network" }, { type: "ipc" }, { type: "uts" }]).map((ns) => {
    const path = joined[ns.type];
    return path !== undefined && (ns.path === undefined || ns.path === "") ? { type: ns.type, path } : { ...ns };
  });
  // The pod's UTS namespace already has the pod's hostname; a container setting it would change it for all.
  const joinsPodUts = linux.namespaces.some((ns) => ns.type === "uts" && ns.path === input.namespaces.uts);
  linux.cgroupsPath = linux.cgroupsPath || `/vmpod/${input.podId}/${input.containerId}`;
  checkCgroupsPath(linux.cgroupsPath);
  const base: OciSpec = { ...spec };
  if (joinsPodUts) delete base.hostname;
  return {
    ...base,
    process,
    root: { path: input.rootfs, readonly: input.readonlyRootfs },
    annotations: {
      "io.kubernetes.cri-o.ContainerType": "container",
      "io.kubernetes.cri-o.SandboxID": input.podId,
      ...(spec.annotations ?? {}),
    },
    linux,
  };
}
