/**
 * Pods' named network namespaces: bind mounts under /run/netns made by
 * `ip netns add`, so they outlive the daemon and any process, and are found
 * again by name after a restart.
 */
import { VmpodError } from "../common/errors.js";
import { exists } from "../common/fs.js";
import { run } from "../common/exec.js";

export const NETNS_DIR = "/run/netns";

const IPROUTE2 = "install the Debian package iproute2";

/** The netns name of a pod: `vmpod-` and the first 24 characters of its 64-hex id. */
export function netnsName(podId: string): string {
  if (!/^[0-9a-f]{64}$/.test(podId)) throw new VmpodError("InvalidArgument", `pod id ${JSON.stringify(podId)} is not 64 hex characters`);
  return `vmpod-${podId.slice(0, 24)}`;
}

export function netnsPath(name: string): string {
  checkName(name);
  return `${NETNS_DIR}/${name}`;
}

export function netnsExists(name: string): Promise<boolean> {
  return exists(netnsPath(name));
}

/** A new named netns with its loopback up. AlreadyExists if the name is taken. */
export async function createNetns(name: string): Promise<string> {
  const path = netnsPath(name);
  if (await exists(path)) throw new VmpodError("AlreadyExists", `network namespace ${name} already exists`);
  await run("ip", ["netns", "add", name], { whenMissing: IPROUTE2 });
  try {
    await run("ip", ["-n", name, "link", "set", "lo", "up"]);
  } catch (err) {
    await removeNetns(name);
    throw err;
  }
  return path;
}

/** Removes a named netns (its bind mount and file); a missing one is not an error. */
export async function removeNetns(name: string): Promise<void> {
  if (!(await exists(netnsPath(name)))) return;
  await run("ip", ["netns", "delete", name], { whenMissing: IPROUTE2 });
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(name)) throw new VmpodError("InvalidArgument", `${JSON.stringify(name)} is not a network namespace name`);
}
