/**
 * The guest's network, as the host configures it: the pod's interfaces
 * (found by MAC address, renamed, given their MTU and addresses, brought up)
 * and its routes (replaced as a whole). One change at a time, each over its
 * own rtnetlink socket. The kernel's errnos become error kinds here.
 *
 * The NIC's driver (virtio_net) is loaded by the guest's init in the
 * background while the agent starts; a link not there yet is waited for
 * until the init says the modules are in.
 */
import { VmpodError, wrap, type ErrorKind } from "../../src/common/errors.js";
import { exists } from "../../src/common/fs.js";
import type { Logger } from "../../src/common/log.js";
import { sleep } from "../../src/common/time.js";
import { ErrnoError } from "./errno.js";
import { formatIp, formatMac, ipv4Broadcast, sameBytes, type IpFamily } from "./network-ip.js";
import {
  IFF_LOOPBACK,
  IFF_UP,
  RT_SCOPE_LINK,
  RT_TABLE_MAIN,
  RTN_UNICAST,
  RTNH_F_ONLINK,
  RTPROT_KERNEL,
} from "./network-netlink.js";
import type { AddressChange, AddressInfo, LinkInfo, RouteInfo, Rtnl } from "./network-rtnl.js";
import {
  checkInterface,
  checkRoute,
  destinationText,
  type CheckedInterface,
  type CheckedRoute,
  type InterfaceRequest,
  type RouteRequest,
} from "./network-spec.js";

export interface InterfaceState {
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly flags: number;
  readonly addresses: readonly { readonly family: IpFamily; readonly address: string; readonly prefixLength: number }[];
}

export interface RouteState {
  readonly family: IpFamily;
  /** "ADDRESS/LENGTH", empty for the default route. */
  readonly dest: string;
  readonly gateway: string;
  readonly device: string;
  readonly source: string;
  readonly scope: number;
  readonly flags: number;
}

export interface GuestNetworkOptions {
  /** Opens a socket on the guest's network (network-socket.ts's openRtnl; a fake in tests). */
  readonly open: () => Promise<Rtnl>;
  /** A file the guest's init makes once the modules loaded in the background (virtio_net) are in. */
  readonly modulesReady?: string;
  /** How long a link is waited for while the modules are not in. */
  readonly linkWaitMs?: number;
  readonly log: Logger;
}

const LINK_WAIT_MS = 10_000;
const LINK_POLL_MS = 20;
/** A link in the way of a rename is moved aside to this name and its index. */
const ASIDE_PREFIX = "vmpod-aside";

/** The kinds of the kernel's refusals; any other errno is Internal. */
const KIND_OF_ERRNO: Readonly<Record<string, ErrorKind>> = {
  EINVAL: "InvalidArgument",
  ERANGE: "InvalidArgument",
  EAFNOSUPPORT: "InvalidArgument",
  EEXIST: "AlreadyExists",
  ENODEV: "NotFound",
  ESRCH: "NotFound",
  EADDRNOTAVAIL: "NotFound",
  ENETUNREACH: "FailedPrecondition",
  EHOSTUNREACH: "FailedPrecondition",
  ENETDOWN: "FailedPrecondition",
  EBUSY: "FailedPrecondition",
  EPERM: "FailedPrecondition",
  EACCES: "FailedPrecondition",
  ENOBUFS: "ResourceExhausted",
  ENOMEM: "ResourceExhausted",
};

export class GuestNetwork {
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: GuestNetworkOptions) {}

  /** Configures the link with the request's MAC address; returns it as it now is. */
  async updateInterface(req: InterfaceRequest): Promise<InterfaceState> {
    const want = checkInterface(req);
    return this.serialized(`update interface ${req.mac}`, (rtnl) => this.applyInterface(rtnl, want));
  }

  /**
   * Makes the guest's routes those given (besides the kernel's own and
   * loopback's): routes on the link first, then those through a gateway.
   * Returns them as applied.
   */
  async updateRoutes(reqs: readonly RouteRequest[]): Promise<RouteState[]> {
    const wanted = reqs.map(checkRoute);
    return this.serialized("update routes", (rtnl) => this.applyRoutes(rtnl, wanted));
  }

  listInterfaces(): Promise<InterfaceState[]> {
    return this.serialized("list interfaces", async (rtnl) => {
      const addresses = await rtnl.addresses();
      return (await rtnl.links()).map((link) => stateOf(link, addresses));
    });
  }

  /** The main table's unicast routes of both families, but loopback's. */
  listRoutes(): Promise<RouteState[]> {
    return this.serialized("list routes", async (rtnl) => {
      const links = await rtnl.links();
      const out: RouteState[] = [];
      for (const family of [4, 6] as const) {
        for (const r of await rtnl.routes(family)) {
          const link = links.find((l) => l.index === r.oif);
          if (r.table !== RT_TABLE_MAIN || r.type !== RTN_UNICAST || !link || isLoopback(link)) continue;
          out.push({
            family,
            dest: destinationText(r.dst, r.dstLength),
            gateway: r.gateway ? formatIp(r.gateway) : "",
            device: link.name,
            source: r.prefsrc ? formatIp(r.prefsrc) : "",
            scope: r.scope,
            flags: r.flags & RTNH_F_ONLINK,
          });
        }
      }
      return out;
    });
  }

  private serialized<T>(step: string, work: (rtnl: Rtnl) => Promise<T>): Promise<T> {
    const result = this.queue.then(async () => {
      let rtnl: Rtnl;
      try {
        rtnl = await this.options.open();
      } catch (err) {
        throw netError(`${step}: open rtnetlink`, err);
      }
      try {
        return await work(rtnl);
      } catch (err) {
        throw netError(step, err);
      } finally {
        rtnl.close();
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  private async applyInterface(rtnl: Rtnl, want: CheckedInterface): Promise<InterfaceState> {
    const { link: found, links } = await this.findLink(rtnl, want.mac);
    let link = found;
    const lo = links.find(isLoopback);
    if (lo && (lo.flags & IFF_UP) === 0) await rtnl.setLink(lo.index, { up: true });

    if (want.name !== undefined && link.name !== want.name) {
      const holder = links.find((l) => l.name === want.name && l.index !== link.index);
      if (holder) {
        const aside = `${ASIDE_PREFIX}${holder.index}`;
        this.options.log.info("moving a link aside for a rename", { link: holder.name, to: aside, for: formatMac(want.mac) });
        if ((holder.flags & IFF_UP) !== 0) await rtnl.setLink(holder.index, { up: false });
        await rtnl.setLink(holder.index, { name: aside });
      }
      // A link is renamed while down.
      if ((link.flags & IFF_UP) !== 0) await rtnl.setLink(link.index, { up: false });
      await rtnl.setLink(link.index, { name: want.name });
      link = { ...link, name: want.name, flags: link.flags & ~IFF_UP };
    }
    if (want.mtu !== undefined && link.mtu !== want.mtu) await rtnl.setLink(link.index, { mtu: want.mtu });

    const present = (await rtnl.addresses()).filter((a) => a.index === link.index);
    for (const a of present) {
      // IPv6 link-local addresses are the kernel's, made when the link comes up.
      if (a.family === 6 && a.scope === RT_SCOPE_LINK) continue;
      if (want.addresses.some((w) => sameBytes(w.address, a.address) && w.prefixLength === a.prefixLength)) continue;
      await rtnl.deleteAddress({ index: link.index, family: a.family, address: a.address, prefixLength: a.prefixLength });
    }
    for (const w of want.addresses) {
      if (present.some((a) => sameBytes(w.address, a.address) && w.prefixLength === a.prefixLength)) continue;
      await rtnl.addAddress(addressChange(link.index, w));
    }
    if ((link.flags & IFF_UP) === 0) await rtnl.setLink(link.index, { up: true });

    const now = (await rtnl.links()).find((l) => l.index === link.index);
    if (!now) throw new VmpodError("NotFound", `link ${want.name ?? link.name} went away while it was configured`);
    return stateOf(now, await rtnl.addresses());
  }

  /** The link with `mac`, waiting for it while the guest's modules are not all in. */
  private async findLink(rtnl: Rtnl, mac: Uint8Array): Promise<{ link: LinkInfo; links: LinkInfo[] }> {
    const marker = this.options.modulesReady;
    const deadline = Date.now() + (this.options.linkWaitMs ?? LINK_WAIT_MS);
    let modulesIn = marker === undefined;
    for (;;) {
      const links = await rtnl.links();
      const link = links.find((l) => !isLoopback(l) && sameBytes(l.mac, mac));
      if (link) return { link, links };
      // One more look once the modules are in: the link may have come with the last of them.
      if (modulesIn) throw new VmpodError("NotFound", `no network interface with MAC address ${formatMac(mac)}`);
      if (marker !== undefined && (await exists(marker))) {
        modulesIn = true;
        continue;
      }
      if (Date.now() >= deadline) {
        throw new VmpodError("NotFound", `no network interface with MAC address ${formatMac(mac)} (the guest's modules were not all in after ${this.options.linkWaitMs ?? LINK_WAIT_MS} ms)`);
      }
      await sleep(LINK_POLL_MS);
    }
  }

  private async applyRoutes(rtnl: Rtnl, wanted: readonly CheckedRoute[]): Promise<RouteState[]> {
    const links = await rtnl.links();
    const indexOf = (device: string): number => {
      const link = links.find((l) => l.name === device);
      if (!link) throw new VmpodError("NotFound", `route: no network interface ${JSON.stringify(device)}`);
      return link.index;
    };
    const resolved = wanted.map((w) => ({ ...w, oif: indexOf(w.device) }));
    // The new routes go in before the old go, so that a refused one leaves the old in place.
    // A gateway is reachable once the routes on its link are in.
    const ordered = [...resolved.filter((r) => !r.gateway), ...resolved.filter((r) => r.gateway)];
    for (const r of ordered) await rtnl.replaceRoute(r);
    // What is left of the old ones (a new route replaced any with its key) goes.
    const loopbacks = new Set(links.filter(isLoopback).map((l) => l.index));
    for (const family of [4, 6] as const) {
      for (const r of await rtnl.routes(family)) {
        if (r.table !== RT_TABLE_MAIN || r.protocol === RTPROT_KERNEL || (r.oif !== undefined && loopbacks.has(r.oif))) continue;
        if (resolved.some((w) => sameRoute(r, w))) continue;
        try {
          await rtnl.deleteRoute(r);
        } catch (err) {
          // Gone meanwhile, with its link's address say.
          if (!(err instanceof ErrnoError && err.code === "ESRCH")) throw err;
        }
      }
    }
    return ordered.map((r) => ({
      family: r.family,
      dest: destinationText(r.dst, r.dstLength),
      gateway: r.gateway ? formatIp(r.gateway) : "",
      device: r.device,
      source: r.prefsrc ? formatIp(r.prefsrc) : "",
      scope: r.scope,
      flags: r.onLink ? RTNH_F_ONLINK : 0,
    }));
  }
}

function isLoopback(link: LinkInfo): boolean {
  return (link.flags & IFF_LOOPBACK) !== 0;
}

function addressChange(index: number, w: { family: IpFamily; address: Uint8Array; prefixLength: number }): AddressChange {
  return {
    index,
    family: w.family,
    address: w.address,
    prefixLength: w.prefixLength,
    // IPv4 subnets with room for one get their broadcast address, as DHCP clients set it.
    ...(w.family === 4 && w.prefixLength <= 30 ? { broadcast: ipv4Broadcast(w.address, w.prefixLength) } : {}),
    // The pod's addresses are its own (the CNI plugin handed them out): no duplicate detection holding them back.
    ...(w.family === 6 ? { noDad: true } : {}),
  };
}

/** Whether an existing route is the one `w` asks for. */
function sameRoute(r: RouteInfo, w: CheckedRoute & { oif: number }): boolean {
  const same = (a: Uint8Array | undefined, b: Uint8Array | undefined) => (a === undefined || b === undefined ? a === b : sameBytes(a, b));
  return r.family === w.family && r.dstLength === w.dstLength && (w.dstLength === 0 || same(r.dst, w.dst)) && r.oif === w.oif && same(r.gateway, w.gateway);
}

function stateOf(link: LinkInfo, addresses: readonly AddressInfo[]): InterfaceState {
  return {
    name: link.name,
    mac: formatMac(link.mac),
    mtu: link.mtu,
    flags: link.flags,
    addresses: addresses
      .filter((a) => a.index === link.index)
      .map((a) => ({ family: a.family, address: formatIp(a.address), prefixLength: a.prefixLength })),
  };
}

/** A failure with its kind: the kernel's errno decides for its refusals. */
function netError(step: string, err: unknown): VmpodError {
  if (err instanceof ErrnoError) return new VmpodError(KIND_OF_ERRNO[err.code] ?? "Internal", step, { cause: err });
  return wrap(step, err);
}
