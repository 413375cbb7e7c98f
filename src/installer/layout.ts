/**
 * Where vmpod lives on a node, as absolute host paths, and the same paths
 * seen from the installer, which reaches the host's filesystem under a root
 * of its own (`/host` in the DaemonSet, `/` when run on the node itself).
 */
import { isAbsolute, join } from "node:path";
import { invalidArgument } from "../common/errors.js";

/** The node's paths the installer writes or reads, in the host's own terms. */
export const HOST_PATHS = {
  /** vmpod itself: node, dist, node_modules, package.json, config, guest assets. */
  installDir: "/opt/vmpod",
  /** The daemon's unit (deploy/systemd/vmpod.service). */
  unit: "/etc/systemd/system/vmpod.service",
  /** kubelet's drop-in pointing it at vmpod (deploy/kubelet/10-vmpod.conf). */
  kubeletDropIn: "/etc/systemd/system/kubelet.service.d/10-vmpod.conf",
  /** The daemon's configuration (deploy/node/configuration.toml when the node had none). */
  config: "/etc/vmpod/configuration.toml",
  /** The CRI socket the unit's daemon serves. */
  socket: "/run/vmpod/vmpod.sock",
  /** The daemon's state (pods' records, sockets): systemd's RuntimeDirectory. */
  runtimeDir: "/run/vmpod",
  /** The daemon's data (image store, CNI cache): systemd's StateDirectory. */
  stateDir: "/var/lib/vmpod",
} as const;

/** What the installer records of an install, inside the install dir. */
export const MANIFEST_NAME = "install-manifest.json";

/** The systemd unit names the installer starts, stops and restarts. */
export const UNIT_NAME = "vmpod.service";
export const KUBELET_UNIT = "kubelet.service";

/** Inside the install dir: where the daemon's node binary goes, and the guest assets. */
export const INSTALLED_NODE = "bin/node";
export const INSTALLED_GUEST_DIR = "guest/out/current";
/** The guest assets the daemon boots (its default kernel, initrd and image paths), and the build's manifest. */
export const GUEST_ASSETS = ["vmlinux", "initrd.img", "root.erofs", "manifest.json"] as const;

/** The node label that says vmpod serves the node, which the RuntimeClasses select. */
export const NODE_LABEL = "vmpod.io/runtime";
/** The label on RuntimeClasses the installer created, so that it deletes only those. */
export const MANAGED_BY_LABEL = "app.kubernetes.io/managed-by";
export const MANAGED_BY_VALUE = "vmpod-installer";

/** The host's filesystem as the installer sees it. */
export class HostRoot {
  readonly root: string;

  constructor(root: string) {
    if (!isAbsolute(root)) throw invalidArgument(`host root ${JSON.stringify(root)} is not an absolute path`);
    this.root = root;
  }

  /** True when the installer runs on the node's own root. */
  get isSlash(): boolean {
    return this.root === "/";
  }

  /** The installer's path of an absolute host path. */
  path(hostPath: string): string {
    if (!isAbsolute(hostPath)) throw invalidArgument(`host path ${JSON.stringify(hostPath)} is not absolute`);
    return join(this.root, hostPath);
  }
}
