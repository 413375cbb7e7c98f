/**
 * What the host asks of the guest's network, checked before anything is
 * changed: interface and route requests in the agent protocol's terms
 * (strings, Kata's conventions) parsed into bytes and numbers, every
 * malformed value an InvalidArgument. Pure.
 */
import { VmpodError } from "../../src/common/errors.js";
import {
  familyBits,
  formatIp,
  isNetworkAddress,
  parseIp,
  parseMac,
  parsePrefix,
  parsePrefixLength,
  sameBytes,
  type IpAddress,
  type IpFamily,
} from "./network-ip.js";
import { RTNH_F_ONLINK } from "./network-netlink.js";

/** An interface as the protocol describes it. */
export interface InterfaceRequest {
  /** The name to give the link; empty keeps its name. */
  readonly name: string;
  /** Finds the link. */
  readonly mac: string;
  /** 0 keeps the MTU. */
  readonly mtu: number;
  readonly addresses: readonly { readonly family: IpFamily; readonly address: string; readonly mask: string }[];
}

/** A route as the protocol describes it. */
export interface RouteRequest {
  readonly family: IpFamily;
  /** "ADDRESS/LENGTH"; empty (Kata's way), "default", 0.0.0.0/0 or ::/0 for the default route. */
  readonly dest: string;
  readonly gateway: string;
  readonly device: string;
  readonly source: string;
  readonly scope: number;
  readonly flags: number;
}

export interface CheckedAddress {
  readonly family: IpFamily;
  readonly address: Uint8Array;
  readonly prefixLength: number;
}

export interface CheckedInterface {
  readonly name?: string;
  readonly mac: Uint8Array;
  readonly mtu?: number;
  readonly addresses: readonly CheckedAddress[];
}

export interface CheckedRoute {
  readonly family: IpFamily;
  readonly dstLength: number;
  /** Absent for the default route. */
  readonly dst?: Uint8Array;
  readonly gateway?: Uint8Array;
  readonly prefsrc?: Uint8Array;
  readonly device: string;
  readonly scope: number;
  readonly onLink: boolean;
}

/** Linux's own bounds: IFNAMSIZ less the NUL; the smallest MTU IPv4 allows, the largest an Ethernet header can say. */
const MAX_NAME_BYTES = 15;
const MIN_MTU = 68;
const MAX_MTU = 65535;

const invalid = (message: string) => new VmpodError("InvalidArgument", message);

/** A link name the kernel accepts (dev_valid_name). */
export function isLinkName(name: string): boolean {
  return name !== "" && name !== "." && name !== ".." && Buffer.byteLength(name) <= MAX_NAME_BYTES && !/[/:\s\0]/.test(name);
}

export function checkInterface(req: InterfaceRequest): CheckedInterface {
  const mac = parseMac(req.mac);
  if (!mac) throw invalid(`interface: bad MAC address ${JSON.stringify(req.mac)}`);
  if (req.name !== "" && !isLinkName(req.name)) throw invalid(`interface ${req.mac}: bad name ${JSON.stringify(req.name)}`);
  if (req.mtu !== 0 && (!Number.isInteger(req.mtu) || req.mtu < MIN_MTU || req.mtu > MAX_MTU)) {
    throw invalid(`interface ${req.mac}: MTU ${req.mtu} is not in ${MIN_MTU}..${MAX_MTU}`);
  }
  const addresses: CheckedAddress[] = [];
  for (const a of req.addresses) {
    const address = parseIp(a.address);
    if (!address) throw invalid(`interface ${req.mac}: bad IP address ${JSON.stringify(a.address)}`);
    if (address.family !== a.family) throw invalid(`interface ${req.mac}: ${a.address} is not an IPv${a.family} address`);
    const prefixLength = parsePrefixLength(a.mask, address.family);
    if (prefixLength === undefined) throw invalid(`interface ${req.mac}: bad prefix length ${JSON.stringify(a.mask)} for ${a.address}`);
    if (addresses.some((b) => sameBytes(b.address, address.bytes))) throw invalid(`interface ${req.mac}: ${a.address} is given twice`);
    addresses.push({ family: address.family, address: address.bytes, prefixLength });
  }
  return {
    mac,
    addresses,
    ...(req.name === "" ? {} : { name: req.name }),
    ...(req.mtu === 0 ? {} : { mtu: req.mtu }),
  };
}

export function checkRoute(req: RouteRequest): CheckedRoute {
  const what = `route ${JSON.stringify(req.dest)} via ${JSON.stringify(req.gateway)} dev ${JSON.stringify(req.device)}`;
  if (!isLinkName(req.device)) throw invalid(`${what}: bad device name`);
  const dst = routeDestination(req.dest, req.family);
  if (!dst) throw invalid(`${what}: bad IPv${req.family} destination`);
  if (!isNetworkAddress(dst.address, dst.length)) throw invalid(`${what}: the destination has bits set past its prefix length`);
  const address = (text: string, role: string): IpAddress | undefined => {
    if (text === "") return undefined;
    const parsed = parseIp(text);
    if (!parsed || parsed.family !== req.family) throw invalid(`${what}: bad IPv${req.family} ${role}`);
    return parsed;
  };
  const gateway = address(req.gateway, "gateway");
  const prefsrc = address(req.source, "source");
  if (!Number.isInteger(req.scope) || req.scope < 0 || req.scope > 255) throw invalid(`${what}: bad scope ${req.scope}`);
  return {
    family: req.family,
    dstLength: dst.length,
    device: req.device,
    scope: req.scope,
    onLink: (req.flags & RTNH_F_ONLINK) !== 0,
    ...(dst.length === 0 ? {} : { dst: dst.address.bytes }),
    ...(gateway ? { gateway: gateway.bytes } : {}),
    ...(prefsrc ? { prefsrc: prefsrc.bytes } : {}),
  };
}

function routeDestination(dest: string, family: IpFamily): { address: IpAddress; length: number } | undefined {
  if (dest === "" || dest === "default") return { address: { family, bytes: new Uint8Array(familyBits(family) / 8) }, length: 0 };
  const prefix = parsePrefix(dest);
  return prefix && prefix.address.family === family ? prefix : undefined;
}

/** The protocol's text of a route's destination: empty for the default route (Kata's way). */
export function destinationText(dst: Uint8Array | undefined, length: number): string {
  return length === 0 || !dst ? "" : `${formatIp(dst)}/${length}`;
}

