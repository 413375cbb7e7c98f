/**
 * The "tcfilter" join between the pod's CNI interface and the VM's tap
 * inside the netns: an ingress qdisc on each, with a u32 filter matching
 * every frame whose action is a mirred redirect out of the other. Frames
 * cross without the netns's IP stack seeing them.
 */
import { run } from "../common/exec.js";
import { readLink } from "./links.js";

const IPROUTE2 = "install the Debian package iproute2";

/** Redirects every frame arriving on `a` out of `b` and every frame arriving on `b` out of `a`. */
export async function addRedirect(ns: string, a: string, b: string): Promise<void> {
  await redirectOneWay(ns, a, b);
  await redirectOneWay(ns, b, a);
}

async function redirectOneWay(ns: string, from: string, to: string): Promise<void> {
  await run("tc", ["-n", ns, "qdisc", "add", "dev", from, "ingress"], { whenMissing: IPROUTE2 });
  await run("tc", ["-n", ns, "filter", "add", "dev", from, "parent", "ffff:", "protocol", "all", "u32", "match", "u8", "0", "0", "action", "mirred", "egress", "redirect", "dev", to]);
}

/** Removes the ingress qdiscs (and with them the filters) of `devices`; absent devices or qdiscs are not errors. */
export async function removeRedirect(ns: string, ...devices: string[]): Promise<void> {
  for (const dev of devices) {
    if ((await readLink(ns, dev)) === undefined) continue;
    if (!(await hasIngressQdisc(ns, dev))) continue;
    await run("tc", ["-n", ns, "qdisc", "del", "dev", dev, "ingress"], { whenMissing: IPROUTE2 });
  }
}

export async function hasIngressQdisc(ns: string, dev: string): Promise<boolean> {
  const { stdout } = await run("tc", ["-j", "-n", ns, "qdisc", "show", "dev", dev, "ingress"], { whenMissing: IPROUTE2 });
  return parseJsonList(stdout).some((q) => (q as { kind?: unknown }).kind === "ingress");
}

/** The devices the ingress filters of `dev` redirect to. */
export async function redirectTargets(ns: string, dev: string): Promise<string[]> {
  const { stdout } = await run("tc", ["-j", "-n", ns, "filter", "show", "dev", dev, "ingress"], { whenMissing: IPROUTE2 });
  return parseRedirectTargets(stdout);
}

/** `tc -j filter show` output → the target devices of its mirred redirect actions. */
export function parseRedirectTargets(json: string): string[] {
  const targets: string[] = [];
  for (const filter of parseJsonList(json)) {
    const actions = (filter as { options?: { actions?: unknown } }).options?.actions;
    if (!Array.isArray(actions)) continue;
    for (const action of actions as unknown[]) {
      const a = action as { kind?: unknown; mirred_action?: unknown; to_dev?: unknown };
      if (a.kind === "mirred" && a.mirred_action === "redirect" && typeof a.to_dev === "string") targets.push(a.to_dev);
    }
  }
  return targets;
}

function parseJsonList(text: string): unknown[] {
  const trimmed = text.trim();
  if (trimmed === "") return [];
  const doc: unknown = JSON.parse(trimmed);
  return Array.isArray(doc) ? (doc as unknown[]) : [];
}
