/**
 * An in-memory kernel for the guest network's tests: links, addresses and
 * routes, refusing as Linux does what the tests rely on (renaming a link
 * that is up, a gateway off every on-link route, a missing route), with
 * failures injected per call.
 */
import { constants } from "node:os";
import { ErrnoError } from "../../../guest/agent/errno.js";
import { parseMac, parseIp, sameBytes, type IpFamily } from "../../../guest/agent/network-ip.js";
import {
  IFF_LOOPBACK,
  IFF_UP,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTPROT_BOOT,
  RTPROT_KERNEL,
} from "../../../guest/agent/network-netlink.js";
import type { AddressChange, AddressInfo, LinkChange, LinkInfo, RouteChange, RouteInfo, Rtnl } from "../../../guest/agent/network-rtnl.js";

const errno = constants.errno;

export function mac(text: string): Uint8Array {
  const bytes = parseMac(text);
  if (!bytes) throw new Error(`bad MAC ${text}`);
  return bytes;
}

export function ip(text: string): Uint8Array {
  const a = parseIp(text);
  if (!a) throw new Error(`bad IP ${text}`);
  return a.bytes;
}

export class FakeKernel {
  links: LinkInfo[] = [{ index: 1, name: "lo", mac: new Uint8Array(6), mtu: 65536, flags: IFF_LOOPBACK | IFF_UP }];
  addresses: AddressInfo[] = [];
  routes: RouteInfo[] = [];
  /** Every change, in order ("set 2 name=eth0", "add-addr 2 10.0.0.2/24"...). */
  readonly calls: string[] = [];
  opened = 0;
  closed = 0;
  /** Sockets open at once, at most (serialization). */
  maxOpen = 0;
  /** Fails the call whose description starts with a key, with that errno, once. */
  readonly failures = new Map<string, number>();
  /** Milliseconds each call takes. */
  delayMs = 0;

  addLink(index: number, name: string, macText: string, flags = 0x1002): void {
    this.links.push({ index, name, mac: mac(macText), mtu: 1500, flags });
  }

  addAddress(index: number, family: IpFamily, address: string, prefixLength: number, scope = 0): void {
    this.addresses.push({ index, family, address: ip(address), prefixLength, scope, flags: 0 });
  }

  addRoute(r: Partial<RouteInfo> & { family: IpFamily; oif: number }): void {
    this.routes.push({ dstLength: 0, table: RT_TABLE_MAIN, protocol: RTPROT_BOOT, scope: 0, type: RTN_UNICAST, tos: 0, flags: 0, ...r });
  }

  link(name: string): LinkInfo | undefined {
    return this.links.find((l) => l.name === name);
  }

  open(): Promise<Rtnl> {
    this.opened++;
    this.maxOpen = Math.max(this.maxOpen, this.opened - this.closed);
    return Promise.resolve(new FakeRtnl(this));
  }
}

class FakeRtnl implements Rtnl {
  private closed = false;

  constructor(private readonly k: FakeKernel) {}

  async links(): Promise<LinkInfo[]> {
    await this.step("dump links");
    return this.k.links.map((l) => ({ ...l }));
  }

  async addresses(): Promise<AddressInfo[]> {
    await this.step("dump addresses");
    return [...this.k.addresses];
  }

  async routes(family: IpFamily): Promise<RouteInfo[]> {
    await this.step(`dump routes ${family}`);
    return this.k.routes.filter((r) => r.family === family);
  }

  async setLink(index: number, change: LinkChange): Promise<void> {
    const parts = [
      change.name === undefined ? "" : ` name=${change.name}`,
      change.mtu === undefined ? "" : ` mtu=${change.mtu}`,
      change.up === undefined ? "" : change.up ? " up" : " down",
    ];
    await this.step(`set ${index}${parts.join("")}`);
    const i = this.k.links.findIndex((l) => l.index === index);
    const link = this.k.links[i];
    if (!link) throw new ErrnoError("set link", errno.ENODEV);
    let next = { ...link };
    if (change.name !== undefined) {
      if ((link.flags & IFF_UP) !== 0) throw new ErrnoError("set link", errno.EBUSY);
      if (this.k.links.some((l) => l.name === change.name && l.index !== index)) throw new ErrnoError("set link", errno.EEXIST);
      next = { ...next, name: change.name };
    }
    if (change.mtu !== undefined) next = { ...next, mtu: change.mtu };
    if (change.up !== undefined) next = { ...next, flags: change.up ? next.flags | IFF_UP : next.flags & ~IFF_UP };
    this.k.links[i] = next;
  }

  async addAddress(a: AddressChange): Promise<void> {
    await this.step(`add-addr ${a.index} ${text(a.address)}/${a.prefixLength}${a.broadcast ? ` brd ${text(a.broadcast)}` : ""}${a.noDad ? " nodad" : ""}`);
    if (this.k.addresses.some((b) => b.index === a.index && sameBytes(b.address, a.address))) throw new ErrnoError("add address", errno.EEXIST);
    this.k.addresses.push({ index: a.index, family: a.family, address: a.address, prefixLength: a.prefixLength, scope: 0, flags: 0 });
    // The kernel's route to the address's subnet.
    this.k.routes.push(kernelRoute(a));
  }

  async deleteAddress(a: AddressChange): Promise<void> {
    await this.step(`del-addr ${a.index} ${text(a.address)}/${a.prefixLength}`);
    const before = this.k.addresses.length;
    this.k.addresses = this.k.addresses.filter((b) => !(b.index === a.index && sameBytes(b.address, a.address) && b.prefixLength === a.prefixLength));
    if (this.k.addresses.length === before) throw new ErrnoError("delete address", errno.EADDRNOTAVAIL);
  }

  async replaceRoute(r: RouteChange): Promise<void> {
    await this.step(`route ${describe(r)}`);
    if (r.gateway && !r.onLink && !this.k.routes.some((o) => o.oif === r.oif && !o.gateway && o.family === r.family && covers(o, r.gateway as Uint8Array))) {
      throw new ErrnoError("add route", errno.ENETUNREACH);
    }
    this.k.routes = this.k.routes.filter((o) => !(o.family === r.family && o.table === RT_TABLE_MAIN && o.dstLength === r.dstLength && sameDst(o.dst, r.dst)));
    this.k.routes.push({
      family: r.family,
      dstLength: r.dstLength,
      table: RT_TABLE_MAIN,
      protocol: RTPROT_BOOT,
      scope: r.scope,
      type: RTN_UNICAST,
      tos: 0,
      flags: r.onLink ? 4 : 0,
      oif: r.oif,
      ...(r.dst ? { dst: r.dst } : {}),
      ...(r.gateway ? { gateway: r.gateway } : {}),
      ...(r.prefsrc ? { prefsrc: r.prefsrc } : {}),
    });
  }

  async deleteRoute(r: RouteInfo): Promise<void> {
    await this.step(`del-route ${describe(r)}`);
    const i = this.k.routes.indexOf(r);
    if (i < 0) throw new ErrnoError("delete route", errno.ESRCH);
    this.k.routes.splice(i, 1);
  }

  close(): void {
    if (!this.closed) this.k.closed++;
    this.closed = true;
  }

  private async step(call: string): Promise<void> {
    if (this.closed) throw new Error(`${call} on a closed socket`);
    if (!call.startsWith("dump")) this.k.calls.push(call);
    if (this.k.delayMs > 0) await new Promise((r) => setTimeout(r, this.k.delayMs));
    for (const [key, code] of this.k.failures) {
      if (call.startsWith(key)) {
        this.k.failures.delete(key);
        throw new ErrnoError(call, code);
      }
    }
  }
}

function text(bytes: Uint8Array): string {
  return bytes.length === 4 ? Array.from(bytes).join(".") : Buffer.from(bytes).toString("hex");
}

function describe(r: { family: IpFamily; dst?: Uint8Array; dstLength: number; gateway?: Uint8Array; oif?: number }): string {
  const dst = r.dstLength === 0 || !r.dst ? "default" : `${text(r.dst)}/${r.dstLength}`;
  return `${dst}${r.gateway ? ` via ${text(r.gateway)}` : ""} dev ${r.oif ?? "-"}`;
}

function sameDst(a: Uint8Array | undefined, b: Uint8Array | undefined): boolean {
  return a === undefined || b === undefined ? a === b : sameBytes(a, b);
}

function covers(route: RouteInfo, address: Uint8Array): boolean {
  for (let bit = 0; bit < route.dstLength; bit++) {
    const mask = 1 << (7 - (bit & 7));
    if ((((route.dst?.[bit >> 3] ?? 0) ^ (address[bit >> 3] ?? 0)) & mask) !== 0) return false;
  }
  return true;
}

function kernelRoute(a: AddressChange): RouteInfo {
  const dst = Uint8Array.from(a.address);
  for (let bit = a.prefixLength; bit < dst.length * 8; bit++) dst[bit >> 3] = (dst[bit >> 3] ?? 0) & ~(1 << (7 - (bit & 7)));
  return {
    family: a.family,
    dstLength: a.prefixLength,
    dst,
    ...(a.family === 4 ? { prefsrc: a.address, scope: 253 } : { priority: 256, scope: 0 }),
    oif: a.index,
    table: RT_TABLE_MAIN,
    protocol: RTPROT_KERNEL,
    type: RTN_UNICAST,
    tos: 0,
    flags: 0,
  };
}
