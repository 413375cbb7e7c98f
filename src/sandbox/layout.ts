/**
 * Where a pod VM's host-side files live:
 *
 *   <stateRoot>/sandboxes/<id>/
 *     vm/            the hypervisor's run dir (QMP, agent and virtiofsd sockets, console log)
 *     shared/        shared with the guest over virtio-fs, mounted there at GUEST_SHARED_DIR
 *       <cid>/rootfs   a container's root filesystem (a bind mount)
 */
import { join } from "node:path";

/** Where the guest mounts the pod's shared directory. */
export const GUEST_SHARED_DIR = "/run/vmpod/shared";
/** Where the guest mounts image layers given as disks (block layers). */
export const GUEST_LAYERS_DIR = "/run/vmpod/layers";
/** Where the guest keeps containers' root filesystems made from block layers. */
const GUEST_CONTAINERS_DIR = "/run/vmpod/containers";

/** The virtio-fs tag of the pod's shared directory. */
export const SHARED_FS_TAG = "vmpod-shared";

export interface SandboxPaths {
  readonly root: string;
  readonly vmDir: string;
  readonly sharedDir: string;
}

/**
 * A pod's directory is named by the first 32 characters of its id: the VM's
 * sockets live below it, and a unix socket's path has room for 107 bytes.
 */
export function sandboxPaths(stateRoot: string, id: string): SandboxPaths {
  const root = join(stateRoot, "sandboxes", id.slice(0, 32));
  return { root, vmDir: join(root, "vm"), sharedDir: join(root, "shared") };
}

/** A container's directory in the pod's shared directory. */
export function containerHostDir(paths: SandboxPaths, containerId: string): string {
  return join(paths.sharedDir, containerId);
}

export function containerHostRootfs(paths: SandboxPaths, containerId: string): string {
  return join(containerHostDir(paths, containerId), "rootfs");
}

export function containerGuestRootfs(containerId: string): string {
  return `${GUEST_SHARED_DIR}/${containerId}/rootfs`;
}

/** A container's root filesystem overlaid in the guest from block layers. */
export function containerGuestBlockRootfs(containerId: string): string {
  return `${GUEST_CONTAINERS_DIR}/${containerId}/rootfs`;
}
