/**
 * The kernel's network configuration as the guest's network code sees it:
 * links, addresses and routes, the changes made to them, and the interface
 * through which they are read and changed (rtnetlink in network-socket.ts,
 * an in-memory kernel in tests).
 */
import type { IpFamily } from "./network-ip.js";

export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  /** The hardware address; empty for a link without one. */
  readonly mac: Uint8Array;
  readonly mtu: number;
  readonly flags: number;
}

export interface AddressInfo {
  readonly index: number;
  readonly family: IpFamily;
  readonly address: Uint8Array;
  readonly prefixLength: number;
  readonly scope: number;
  readonly flags: number;
}

export interface RouteInfo {
  readonly family: IpFamily;
  readonly dstLength: number;
  /** Absent for a default route. */
  readonly dst?: Uint8Array;
  readonly gateway?: Uint8Array;
  readonly prefsrc?: Uint8Array;
  readonly oif?: number;
  readonly priority?: number;
  readonly table: number;
  readonly protocol: number;
  readonly scope: number;
  readonly type: number;
  readonly tos: number;
  readonly flags: number;
}

/** One address to add or remove. */
export interface AddressChange {
  readonly index: number;
  readonly family: IpFamily;
  readonly address: Uint8Array;
  readonly prefixLength: number;
  /** IPv4: the broadcast address. */
  readonly broadcast?: Uint8Array;
  readonly noDad?: boolean;
}

/** One route to add (or replace) in the main table. */
export interface RouteChange {
  readonly family: IpFamily;
  readonly dstLength: number;
  readonly dst?: Uint8Array;
  readonly gateway?: Uint8Array;
  readonly prefsrc?: Uint8Array;
  readonly oif: number;
  readonly scope: number;
  readonly onLink: boolean;
}

export interface LinkChange {
  readonly name?: string;
  readonly mtu?: number;
  readonly up?: boolean;
}

/**
 * The kernel's routing configuration as the guest's network code uses it;
 * network-socket.ts speaks it over rtnetlink, tests fake it. Failures are
 * ErrnoErrors (errno.ts) carrying the kernel's errno.
 */
export interface Rtnl {
  links(): Promise<LinkInfo[]>;
  addresses(): Promise<AddressInfo[]>;
  /** Every route of the family, in every table. */
  routes(family: IpFamily): Promise<RouteInfo[]>;
  setLink(index: number, change: LinkChange): Promise<void>;
  addAddress(a: AddressChange): Promise<void>;
  deleteAddress(a: AddressChange): Promise<void>;
  replaceRoute(r: RouteChange): Promise<void>;
  deleteRoute(r: RouteInfo): Promise<void>;
  close(): void;
}
