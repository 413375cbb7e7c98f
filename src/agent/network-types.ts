/**
 * The guest's network in the agent layer's own terms: the interface the
 * guest is to have (the pod's CNI interface's identity: MAC, MTU, addresses)
 * and its routes. The network layer has its own types of the same shape;
 * the sandbox layer hands one to the other.
 */

export type IpFamily = 4 | 6;

export interface InterfaceAddress {
  readonly family: IpFamily;
  readonly address: string;
  readonly prefixLength: number;
}

/** An interface of the guest, found there by its MAC address. */
export interface InterfaceConfig {
  /** The name the link gets in the guest ("eth0"). */
  readonly name: string;
  /** "aa:bb:cc:dd:ee:ff", as QEMU gives it to the guest's NIC. */
  readonly mac: string;
  /** 0 leaves the guest's MTU as it is. */
  readonly mtu: number;
  /** All of the link's addresses; the guest removes others (but IPv6 link-local ones). */
  readonly addresses: readonly InterfaceAddress[];
}

/** An interface as the guest reports it. */
export interface InterfaceStatus extends InterfaceConfig {
  readonly up: boolean;
}

export type RouteScope = "universe" | "link" | "host";

export interface RouteConfig {
  readonly family: IpFamily;
  /** A prefix ("10.88.0.0/16"); "0.0.0.0/0" or "::/0" for the default route. */
  readonly destination: string;
  /** Absent for a route on the link itself. */
  readonly gateway?: string;
  /** The guest link's name. */
  readonly device: string;
  /** The preferred source address. */
  readonly source?: string;
  /** By default "link" without a gateway, "universe" with one. */
  readonly scope?: RouteScope;
}
