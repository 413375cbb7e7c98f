/**
 * The host operations a pod's network is built from (netns, interfaces in
 * it, tap or macvtap, redirects), behind one interface so that the pod
 * network's steps and their undoing can be tested with a fake host.
 */
import { closeSync } from "node:fs";
import { deleteLink, readLink, setLinkUp, type LinkInfo } from "./links.js";
import { openMacvtap } from "./macvtap.js";
import { createNetns, netnsExists, netnsPath, removeNetns } from "./netns.js";
import { openTap } from "./tap.js";
import { addRedirect, removeRedirect } from "./tc-redirect.js";

export interface NetworkHost {
  /** Makes netns `name` with its loopback up; returns its path. */
  createNetns(name: string): Promise<string>;
  /** Idempotent. */
  removeNetns(name: string): Promise<void>;
  netnsExists(name: string): Promise<boolean>;
  readLink(ns: string, name: string): Promise<LinkInfo | undefined>;
  /** Opens tap `name` in netns `ns` and brings it up with `mtu`; returns its descriptor. */
  openTap(ns: string, name: string, mtu: number): Promise<number>;
  /** Makes macvtap `name` on `lower` in netns `ns` (taking over `lower`'s hardware address) and opens it. */
  openMacvtap(ns: string, lower: string, name: string): Promise<number>;
  /** Idempotent. */
  deleteLink(ns: string, name: string): Promise<void>;
  addRedirect(ns: string, a: string, b: string): Promise<void>;
  /** Idempotent. */
  removeRedirect(ns: string, a: string, b: string): Promise<void>;
  closeFd(fd: number): void;
}

/** The real host; `devDir` is a private directory for a macvtap's device node. */
export function realNetworkHost(devDir: string): NetworkHost {
  return {
    createNetns,
    removeNetns,
    netnsExists,
    readLink,
    async openTap(ns, name, mtu) {
      const fd = openTap(netnsPath(ns), name);
      try {
        await setLinkUp(ns, name, { mtu });
      } catch (err) {
        closeSync(fd);
        throw err;
      }
      return fd;
    },
    openMacvtap: (ns, lower, name) => openMacvtap(ns, lower, devDir, name),
    deleteLink,
    addRedirect,
    removeRedirect: (ns, a, b) => removeRedirect(ns, a, b),
    closeFd(fd) {
      try {
        closeSync(fd);
      } catch {
        // closed already
      }
    },
  };
}
