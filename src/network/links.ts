/**
 * Network interfaces inside a pod's netns, through iproute2 (`ip -n NS`):
 * reading one (address, MTU, index), bringing one up, deleting one.
 */
import { VmpodError } from "../common/errors.js";
import { run } from "../common/exec.js";

export interface LinkInfo {
  readonly name: string;
  readonly index: number;
  readonly mac: string;
  readonly mtu: number;
}

/** The interface `name` in netns `ns`, or undefined when there is none. */
export async function readLink(ns: string, name: string): Promise<LinkInfo | undefined> {
  const { stdout } = await run("ip", ["-j", "-n", ns, "link", "show"]);
  const links = parseLinks(stdout);
  return links.find((l) => l.name === name);
}

/** `ip -j link show` output → links. */
export function parseLinks(json: string): LinkInfo[] {
  let doc: unknown;
  try {
    doc = JSON.parse(json === "" ? "[]" : json);
  } catch (err) {
    throw new VmpodError("Internal", "parse ip -j link output", { cause: err });
  }
  if (!Array.isArray(doc)) throw new VmpodError("Internal", "ip -j link printed no list");
  const out: LinkInfo[] = [];
  for (const entry of doc as unknown[]) {
    const l = entry as { ifname?: unknown; ifindex?: unknown; address?: unknown; mtu?: unknown };
    if (typeof l.ifname !== "string" || typeof l.ifindex !== "number" || typeof l.mtu !== "number") continue;
    out.push({ name: l.ifname, index: l.ifindex, mac: typeof l.address === "string" ? l.address : "", mtu: l.mtu });
  }
  return out;
}

/** Sets an interface's MTU (and hardware address when given) and brings it up. */
export async function setLinkUp(ns: string, name: string, options: { mtu: number; mac?: string }): Promise<void> {
  const args = ["-n", ns, "link", "set", "dev", name, "mtu", String(options.mtu)];
  if (options.mac !== undefined) args.push("address", options.mac);
  await run("ip", [...args, "up"]);
}

export async function setLinkAddress(ns: string, name: string, mac: string): Promise<void> {
  await run("ip", ["-n", ns, "link", "set", "dev", name, "address", mac]);
}

/** Deletes an interface; one that is not there is not an error. */
export async function deleteLink(ns: string, name: string): Promise<void> {
  if ((await readLink(ns, name)) === undefined) return;
  await run("ip", ["-n", ns, "link", "delete", "dev", name]);
}
