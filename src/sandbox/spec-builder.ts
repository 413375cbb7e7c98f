/**
 * What the PodManager needs to turn a container's CRI config into the OCI
 * spec its runtime runs: the request, and the builder's signature. The
 * builder (container-spec.ts, wired in main.ts) knows OCI; the manager
 * does not.
 */
import type { OciSpec } from "../common/oci-spec.js";
import type { ImageRecord } from "../image/types.js";
import type { ContainerConfig, Mount, PodConfig } from "./types.js";

/** A container mount with the path its runtime sees (a guest path for VM pods). */
export interface ResolvedMount {
  readonly containerPath: string;
  readonly source: string;
  readonly readonly: boolean;
  readonly propagation: Mount["propagation"];
}

export interface SpecRequest {
  readonly podId: string;
  readonly pod: PodConfig;
  readonly containerId: string;
  readonly container: ContainerConfig;
  readonly image: ImageRecord;
  /** The pod's runtime handler name. */
  readonly handler: string;
  readonly mounts: readonly ResolvedMount[];
  /** The pod's namespaces to join, for host namespace pods. */
  readonly podNamespaces?: { readonly network?: string; readonly ipc?: string; readonly uts?: string };
  /** The pod's /etc files to bind into the container, unless it mounts its own. */
  readonly podFiles?: { readonly hostname?: string; readonly resolvConf?: string; readonly hosts?: string };
  /** The image's unpacked layers on the host, lowest first (for its /etc/passwd and /etc/group). */
  readonly layerDirs: readonly string[];
}

export type ContainerSpecBuilder = (request: SpecRequest) => Promise<OciSpec>;
