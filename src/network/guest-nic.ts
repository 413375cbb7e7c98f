/**
 * What the guest's interface is given, derived from the CNI result: the
 * CNI interface's hardware address and MTU, its addresses, the routes the
 * plugins configured (a route without a gateway goes through the gateway of
 * its family's address when there is one, as the IPAM plugins configure it,
 * and is on-link otherwise), the on-link subnet route of each address, the
 * pod IPs and DNS.
 */
import type { CniResult } from "./cni-result.js";
import type { GuestNic, GuestRoute, IpAddress, PodDns } from "./types.js";

/** The index in `result.interfaces` of the container-side interface `ifName`; -1 when the result names none. */
export function sandboxInterfaceIndex(result: CniResult, ifName: string, netnsPath: string): number {
  const candidates = result.interfaces.map((iface, i) => ({ iface, i })).filter(({ iface }) => iface.name === ifName && iface.sandbox !== undefined);
  const exact = candidates.find(({ iface }) => iface.sandbox === netnsPath);
  return (exact ?? candidates[0])?.i ?? -1;
}

/**
 * The guest's NIC. `link` is the interface as read in the netns: its MTU,
 * and its hardware address when the result gives none.
 */
export function guestNic(result: CniResult, ifName: string, netnsPath: string, link: { readonly mac: string; readonly mtu: number }): GuestNic {
  const index = sandboxInterfaceIndex(result, ifName, netnsPath);
  const iface = result.interfaces[index];
  const addresses: IpAddress[] = result.ips
    .filter((ip) => ip.interface === undefined || ip.interface === index)
    .map((ip) => {
      const [address = "", prefix = ""] = ip.address.split("/");
      return { family: ip.family, address, prefixLength: Number(prefix) };
    });
  return { name: ifName, mac: (iface?.mac ?? link.mac).toLowerCase(), mtu: link.mtu, addresses: byFamily(addresses) };
}

/** The guest's routes: on-link subnet routes first, so that every gateway is reachable when the rest are added. */
export function guestRoutes(result: CniResult, nic: GuestNic): GuestRoute[] {
  const routes: GuestRoute[] = [];
  const seen = new Set<string>();
  const add = (r: GuestRoute) => {
    const key = `${r.family} ${r.destination}`;
    if (seen.has(key)) return;
    seen.add(key);
    routes.push(r);
  };
  for (const a of nic.addresses) {
    if (a.prefixLength === (a.family === 4 ? 32 : 128)) continue;
    add({ family: a.family, destination: `${networkAddress(a.address, a.prefixLength, a.family)}/${a.prefixLength}`, device: nic.name, scope: "link" });
  }
  const gateways = new Map<4 | 6, string>();
  for (const ip of result.ips) if (ip.gateway !== undefined && !gateways.has(ip.family)) gateways.set(ip.family, ip.gateway);
  const withGateway: GuestRoute[] = [];
  for (const r of result.routes) {
    const family: 4 | 6 = r.dst.includes(":") ? 6 : 4;
    const [dst = "", prefix = "0"] = r.dst.split("/");
    const destination = `${networkAddress(dst, Number(prefix), family)}/${prefix}`;
    const gateway = r.gw ?? gateways.get(family);
    if (gateway === undefined) add({ family, destination, device: nic.name, scope: "link" });
    else withGateway.push({ family, destination, gateway, device: nic.name, scope: "universe" });
  }
  for (const r of withGateway) add(r);
  return routes;
}

/** The pod IPs: IPv4 first, each family in the result's order. */
export function podIps(nic: GuestNic): string[] {
  return nic.addresses.map((a) => a.address);
}

/** The DNS settings of the result; undefined when it gives none. */
export function podDns(result: CniResult): PodDns | undefined {
  const { nameservers, domain, search, options } = result.dns;
  const fullSearch = domain !== undefined && !search.includes(domain) ? [domain, ...search] : [...search];
  if (nameservers.length === 0 && fullSearch.length === 0 && options.length === 0) return undefined;
  return { nameservers: [...nameservers], search: fullSearch, options: [...options] };
}

function byFamily(addresses: IpAddress[]): IpAddress[] {
  return [...addresses.filter((a) => a.family === 4), ...addresses.filter((a) => a.family === 6)];
}

/** The first address of the subnet of `address`/`prefix`, in canonical form. */
export function networkAddress(address: string, prefix: number, family: 4 | 6): string {
  if (family === 4) {
    const n = address.split(".").reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
    const masked = n & mask(prefix, 32);
    return [24n, 16n, 8n, 0n].map((shift) => String((masked >> shift) & 0xffn)).join(".");
  }
  const masked = parseIpv6(address) & mask(prefix, 128);
  const groups = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(((masked >> shift) & 0xffffn).toString(16));
  return new URL(`http://[${groups.join(":")}]`).hostname.slice(1, -1);
}

function mask(prefix: number, bits: number): bigint {
  const all = (1n << BigInt(bits)) - 1n;
  return prefix <= 0 ? 0n : (all << BigInt(bits - prefix)) & all;
}

function parseIpv6(address: string): bigint {
  let text = address;
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    // an embedded IPv4 address, as in ::ffff:10.0.0.1
    const v4 = tail.split(".").map(Number);
    text = `${text.slice(0, lastColon + 1)}${(((v4[0] ?? 0) << 8) | (v4[1] ?? 0)).toString(16)}:${(((v4[2] ?? 0) << 8) | (v4[3] ?? 0)).toString(16)}`;
  }
  const [head = "", rest] = text.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = rest === undefined || rest === "" ? [] : rest.split(":");
  const fill = rest === undefined ? [] : new Array<string>(8 - left.length - right.length).fill("0");
  return [...left, ...fill, ...right].reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}
