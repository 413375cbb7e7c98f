/**
 * rtnetlink messages, encoded and decoded: the requests the guest's network
 * code sends (link changes, addresses, routes, dumps) and the kernel's
 * replies (links, addresses, routes, acknowledgements). Pure: the socket is
 * network-socket.ts. Host byte order is little-endian (x86_64 guests).
 */
import type { IpFamily } from "./network-ip.js";
import type { AddressChange, AddressInfo, LinkChange, LinkInfo, RouteChange, RouteInfo } from "./network-rtnl.js";

export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const RTM_NEWLINK = 16;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_CREATE = 0x400;
/** On an error message: the request is echoed as its header only. */
const NLM_F_CAPPED = 0x100;
/** On an error message: extended-ack attributes follow the echoed request. */
const NLM_F_ACK_TLVS = 0x200;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_INET6 = 10;

export const IFF_UP = 0x1;
export const IFF_LOOPBACK = 0x8;

export const RT_TABLE_MAIN = 254;
export const RTPROT_KERNEL = 2;
export const RTPROT_BOOT = 3;
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_HOST = 254;
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;
export const RTNH_F_ONLINK = 0x4;

export const IFA_F_NODAD = 0x2;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_BROADCAST = 4;
const IFA_FLAGS = 8;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_PREFSRC = 7;
const RTA_TABLE = 15;
const NLMSGERR_ATTR_MSG = 1;

const NLMSG_HDRLEN = 16;

export interface NlMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly body: Buffer;
}

export function familyCode(family: IpFamily): number {
  return family === 4 ? AF_INET : AF_INET6;
}

function familyOf(code: number): IpFamily | undefined {
  return code === AF_INET ? 4 : code === AF_INET6 ? 6 : undefined;
}

const align = (n: number) => (n + 3) & ~3;

/** Attributes in rtattr form: length u16, type u16, value, padding to 4. */
class Attrs {
  private readonly parts: Buffer[] = [];

  bytes(type: number, value: Uint8Array): this {
    const attr = Buffer.alloc(align(4 + value.length));
    attr.writeUInt16LE(4 + value.length, 0);
    attr.writeUInt16LE(type, 2);
    attr.set(value, 4);
    this.parts.push(attr);
    return this;
  }

  u32(type: number, value: number): this {
    const v = Buffer.alloc(4);
    v.writeUInt32LE(value >>> 0, 0);
    return this.bytes(type, v);
  }

  string(type: number, value: string): this {
    return this.bytes(type, Buffer.from(`${value}\0`));
  }

  get buffer(): Buffer {
    return Buffer.concat(this.parts);
  }
}

/** A whole message: the 16-byte header, then `body`. */
export function encodeMessage(type: number, flags: number, seq: number, body: Buffer): Buffer {
  const header = Buffer.alloc(NLMSG_HDRLEN);
  header.writeUInt32LE(NLMSG_HDRLEN + body.length, 0);
  header.writeUInt16LE(type, 4);
  header.writeUInt16LE(flags, 6);
  header.writeUInt32LE(seq >>> 0, 8);
  header.writeUInt32LE(0, 12);
  return Buffer.concat([header, body]);
}

function ifinfomsg(index: number, flags: number, change: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(AF_UNSPEC, 0);
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags >>> 0, 8);
  b.writeUInt32LE(change >>> 0, 12);
  return b;
}

function ifaddrmsg(family: number, prefixLength: number, flags: number, scope: number, index: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt8(family, 0);
  b.writeUInt8(prefixLength, 1);
  b.writeUInt8(flags & 0xff, 2);
  b.writeUInt8(scope, 3);
  b.writeUInt32LE(index, 4);
  return b;
}

function rtmsg(r: { family: number; dstLength: number; tos: number; table: number; protocol: number; scope: number; type: number; flags: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(r.family, 0);
  b.writeUInt8(r.dstLength, 1);
  b.writeUInt8(0, 2);
  b.writeUInt8(r.tos, 3);
  b.writeUInt8(Math.min(r.table, 255), 4);
  b.writeUInt8(r.protocol, 5);
  b.writeUInt8(r.scope, 6);
  b.writeUInt8(r.type, 7);
  b.writeUInt32LE(r.flags >>> 0, 8);
  return b;
}

export function linkDumpRequest(seq: number): Buffer {
  return encodeMessage(RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, ifinfomsg(0, 0, 0));
}

export function addressDumpRequest(seq: number): Buffer {
  return encodeMessage(RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, ifaddrmsg(AF_UNSPEC, 0, 0, 0, 0));
}

export function routeDumpRequest(seq: number, family: IpFamily): Buffer {
  const body = rtmsg({ family: familyCode(family), dstLength: 0, tos: 0, table: 0, protocol: 0, scope: 0, type: 0, flags: 0 });
  return encodeMessage(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, seq, body);
}

/** Renames, sets the MTU of, or brings up or down the link `index`. */
export function setLinkRequest(seq: number, index: number, change: LinkChange): Buffer {
  const attrs = new Attrs();
  if (change.name !== undefined) attrs.string(IFLA_IFNAME, change.name);
  if (change.mtu !== undefined) attrs.u32(IFLA_MTU, change.mtu);
  const flags = change.up === true ? IFF_UP : 0;
  const mask = change.up === undefined ? 0 : IFF_UP;
  return encodeMessage(RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat([ifinfomsg(index, flags, mask), attrs.buffer]));
}

export function addressRequest(seq: number, op: "add" | "delete", a: AddressChange): Buffer {
  const ifaFlags = a.noDad === true ? IFA_F_NODAD : 0;
  const attrs = new Attrs().bytes(IFA_LOCAL, a.address).bytes(IFA_ADDRESS, a.address);
  if (a.broadcast) attrs.bytes(IFA_BROADCAST, a.broadcast);
  if (op === "add") attrs.u32(IFA_FLAGS, ifaFlags);
  const body = Buffer.concat([ifaddrmsg(familyCode(a.family), a.prefixLength, ifaFlags, 0, a.index), attrs.buffer]);
  return op === "add"
    ? encodeMessage(RTM_NEWADDR, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq, body)
    : encodeMessage(RTM_DELADDR, NLM_F_REQUEST | NLM_F_ACK, seq, body);
}

/** Adds a route to the main table, replacing one with the same key. */
export function replaceRouteRequest(seq: number, r: RouteChange): Buffer {
  const attrs = new Attrs();
  if (r.dst && r.dstLength > 0) attrs.bytes(RTA_DST, r.dst);
  if (r.gateway) attrs.bytes(RTA_GATEWAY, r.gateway);
  if (r.prefsrc) attrs.bytes(RTA_PREFSRC, r.prefsrc);
  attrs.u32(RTA_OIF, r.oif);
  const head = rtmsg({
    family: familyCode(r.family),
    dstLength: r.dstLength,
    tos: 0,
    table: RT_TABLE_MAIN,
    protocol: RTPROT_BOOT,
    scope: r.scope,
    type: RTN_UNICAST,
    flags: r.onLink ? RTNH_F_ONLINK : 0,
  });
  return encodeMessage(RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE, seq, Buffer.concat([head, attrs.buffer]));
}

/** Deletes a route as a dump described it. */
export function deleteRouteRequest(seq: number, r: RouteInfo): Buffer {
  const attrs = new Attrs();
  if (r.dst && r.dstLength > 0) attrs.bytes(RTA_DST, r.dst);
  if (r.gateway) attrs.bytes(RTA_GATEWAY, r.gateway);
  if (r.oif !== undefined) attrs.u32(RTA_OIF, r.oif);
  if (r.priority !== undefined) attrs.u32(RTA_PRIORITY, r.priority);
  attrs.u32(RTA_TABLE, r.table);
  const head = rtmsg({ ...r, family: familyCode(r.family), scope: RT_SCOPE_NOWHERE, flags: 0 });
  return encodeMessage(RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK, seq, Buffer.concat([head, attrs.buffer]));
}

/** Splits a datagram into its messages; a truncated tail is an error. */
export function parseMessages(data: Buffer): NlMessage[] {
  const out: NlMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= data.length) {
    const len = data.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > data.length) throw new RangeError(`netlink message of ${len} bytes at ${off} overruns ${data.length}`);
    out.push({ type: data.readUInt16LE(off + 4), flags: data.readUInt16LE(off + 6), seq: data.readUInt32LE(off + 8), body: data.subarray(off + NLMSG_HDRLEN, off + len) });
    off += align(len);
  }
  return out;
}

function parseAttrs(data: Buffer): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  let off = 0;
  while (off + 4 <= data.length) {
    const len = data.readUInt16LE(off);
    if (len < 4 || off + len > data.length) break;
    // The top bits are the nested and byte-order flags.
    attrs.set(data.readUInt16LE(off + 2) & 0x3fff, data.subarray(off + 4, off + len));
    off += align(len);
  }
  return attrs;
}

function cString(value: Buffer | undefined): string {
  if (!value) return "";
  const nul = value.indexOf(0);
  return value.subarray(0, nul < 0 ? value.length : nul).toString();
}

function u32(value: Buffer | undefined): number | undefined {
  return value && value.length >= 4 ? value.readUInt32LE(0) : undefined;
}

export function parseLink(body: Buffer): LinkInfo {
  const attrs = parseAttrs(body.subarray(16));
  return {
    index: body.readInt32LE(4),
    flags: body.readUInt32LE(8),
    name: cString(attrs.get(IFLA_IFNAME)),
    mac: Uint8Array.from(attrs.get(IFLA_ADDRESS) ?? []),
    mtu: u32(attrs.get(IFLA_MTU)) ?? 0,
  };
}

/** An address message; undefined for a family other than IPv4 and IPv6. */
export function parseAddress(body: Buffer): AddressInfo | undefined {
  const family = familyOf(body.readUInt8(0));
  if (family === undefined) return undefined;
  const attrs = parseAttrs(body.subarray(8));
  // IPv4 keeps the interface's own address in IFA_LOCAL (IFA_ADDRESS is the peer's on point-to-point links).
  const address = (family === 4 ? attrs.get(IFA_LOCAL) : undefined) ?? attrs.get(IFA_ADDRESS);
  if (!address) return undefined;
  return {
    family,
    prefixLength: body.readUInt8(1),
    flags: u32(attrs.get(IFA_FLAGS)) ?? body.readUInt8(2),
    scope: body.readUInt8(3),
    index: body.readUInt32LE(4),
    address: Uint8Array.from(address),
  };
}

/** A route message; undefined for a family other than IPv4 and IPv6. */
export function parseRoute(body: Buffer): RouteInfo | undefined {
  const family = familyOf(body.readUInt8(0));
  if (family === undefined) return undefined;
  const attrs = parseAttrs(body.subarray(12));
  const bytes = (type: number) => {
    const v = attrs.get(type);
    return v ? { value: Uint8Array.from(v) } : undefined;
  };
  const dst = bytes(RTA_DST);
  const gateway = bytes(RTA_GATEWAY);
  const prefsrc = bytes(RTA_PREFSRC);
  const oif = u32(attrs.get(RTA_OIF));
  const priority = u32(attrs.get(RTA_PRIORITY));
  return {
    family,
    dstLength: body.readUInt8(1),
    tos: body.readUInt8(3),
    table: u32(attrs.get(RTA_TABLE)) ?? body.readUInt8(4),
    protocol: body.readUInt8(5),
    scope: body.readUInt8(6),
    type: body.readUInt8(7),
    flags: body.readUInt32LE(8),
    ...(dst ? { dst: dst.value } : {}),
    ...(gateway ? { gateway: gateway.value } : {}),
    ...(prefsrc ? { prefsrc: prefsrc.value } : {}),
    ...(oif === undefined ? {} : { oif }),
    ...(priority === undefined ? {} : { priority }),
  };
}

/**
 * An NLMSG_ERROR's content: `errno` 0 for an acknowledgement, else the
 * positive errno; `message` the kernel's extended-ack text, if any.
 */
export function parseError(message: NlMessage): { errno: number; message?: string } {
  const errno = 0 - message.body.readInt32LE(0);
  if ((message.flags & NLM_F_ACK_TLVS) === 0 || message.body.length < 4 + NLMSG_HDRLEN) return { errno };
  const echoed = (message.flags & NLM_F_CAPPED) !== 0 ? NLMSG_HDRLEN : message.body.readUInt32LE(4);
  const start = 4 + echoed;
  const text = cString(parseAttrs(message.body.subarray(align(start))).get(NLMSGERR_ATTR_MSG));
  return text === "" ? { errno } : { errno, message: text };
}
