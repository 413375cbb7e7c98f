/**
 * The "macvtap" join: a macvtap in bridge mode on the pod's CNI interface,
 * opened by descriptor like the tap. The macvtap takes the CNI interface's
 * hardware address (the one the pod's network knows the pod by, and the
 * guest's NIC uses), and the CNI interface gets a new random one, since a
 * macvtap may not share its lower device's address; the CNI interface stops
 * answering ARP, so the pod's address is the guest's alone.
 *
 * Its character device /dev/tapN is made by udev on most hosts, and only
 * for macvtaps of the host's netns; here the node is made by the daemon in
 * a private directory from the numbers sysfs gives inside the netns, opened
 * with the thread in the netns, and unlinked at once.
 */
import { randomBytes } from "node:crypto";
import { constants as fsConstants, openSync } from "node:fs";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { run } from "../common/exec.js";
import { deleteLink, readLink, setLinkAddress, setLinkUp } from "./links.js";
import { netnsPath } from "./netns.js";
import { inNetns } from "./ns-calls.js";

export const MACVTAP_NAME = "mvtap0_vmpod";

/**
 * Creates macvtap `name` on `lower` in netns `ns` and opens it. `devDir` is
 * a directory of the daemon's own where the device node is made for a moment.
 * Returns the close-on-exec descriptor, which the caller owns; the macvtap
 * itself stays until deleted (or the netns goes).
 */
export async function openMacvtap(ns: string, lower: string, devDir: string, name: string = MACVTAP_NAME): Promise<number> {
  const lowerLink = await readLink(ns, lower);
  if (lowerLink === undefined) throw new VmpodError("NotFound", `no interface ${lower} in network namespace ${ns}`);
  await run("ip", ["-n", ns, "link", "add", "link", lower, "name", name, "type", "macvtap", "mode", "bridge"]);
  try {
    await setLinkAddress(ns, lower, randomMac());
    // The CNI interface keeps the pod's addresses (for CNI's DEL and CHECK) but must not answer
    // for them: ARP replies with its new address would take the pod's traffic from the guest.
    await run("ip", ["-n", ns, "link", "set", "dev", lower, "arp", "off"]);
    await setLinkUp(ns, name, { mtu: lowerLink.mtu, mac: lowerLink.mac });
    const link = await readLink(ns, name);
    if (link === undefined) throw new VmpodError("Internal", `macvtap ${name} vanished from ${ns}`);
    const { stdout } = await run("ip", ["netns", "exec", ns, "cat", `/sys/class/net/${name}/macvtap/tap${link.index}/dev`]);
    const m = /^(\d+):(\d+)\s*$/.exec(stdout);
    if (!m) throw new VmpodError("Internal", `macvtap ${name}: unexpected device numbers ${JSON.stringify(stdout)}`);
    return await openCharDevice(ns, devDir, m[1] ?? "", m[2] ?? "");
  } catch (err) {
    await deleteLink(ns, name).catch(() => {});
    await setLinkAddress(ns, lower, lowerLink.mac).catch(() => {});
    await run("ip", ["-n", ns, "link", "set", "dev", lower, "arp", "on"]).catch(() => {});
    throw err;
  }
}

async function openCharDevice(ns: string, devDir: string, major: string, minor: string): Promise<number> {
  await mkdir(devDir, { recursive: true, mode: 0o700 });
  const node = join(devDir, `tap-${randomBytes(6).toString("hex")}`);
  await run("mknod", ["-m", "600", node, "c", major, minor]);
  try {
    return inNetns(netnsPath(ns), () => openSync(node, fsConstants.O_RDWR));
  } finally {
    await rm(node, { force: true });
  }
}

/** A random unicast, locally administered hardware address. */
export function randomMac(): string {
  const b = randomBytes(6);
  b[0] = ((b[0] ?? 0) & 0xfe) | 0x02;
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join(":");
}

