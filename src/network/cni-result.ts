/**
 * CNI results: what a plugin prints after ADD, in any of the versions this
 * runtime speaks (0.3.0, 0.3.1, 0.4.0, 1.0.0), read into one shape, and
 * written back in a given version when handed on as `prevResult`.
 * (0.3.x and 0.4.0 tag each address with "version": "4" or "6"; 1.0.0
 * leaves it to the address.)
 */
import { isIP } from "node:net";
import { VmpodError } from "../common/errors.js";
import { SUPPORTED_CNI_VERSIONS } from "./cni-config.js";

export interface CniInterface {
  readonly name: string;
  readonly mac?: string;
  readonly mtu?: number;
  /** The netns path for interfaces inside the container's netns; absent for host-side ones. */
  readonly sandbox?: string;
}

export interface CniIp {
  readonly family: 4 | 6;
  /** CIDR: "10.88.0.5/16". */
  readonly address: string;
  readonly gateway?: string;
  /** Index into `interfaces`. */
  readonly interface?: number;
}

export interface CniRoute {
  /** CIDR: "0.0.0.0/0". */
  readonly dst: string;
  readonly gw?: string;
}

export interface CniDns {
  readonly nameservers: readonly string[];
  readonly domain?: string;
  readonly search: readonly string[];
  readonly options: readonly string[];
}

export interface CniResult {
  readonly cniVersion: string;
  readonly interfaces: readonly CniInterface[];
  readonly ips: readonly CniIp[];
  readonly routes: readonly CniRoute[];
  readonly dns: CniDns;
}

/** A result object (a plugin's output, or a cached one) → CniResult. `where` names it in errors. */
export function parseCniResult(doc: unknown, where: string): CniResult {
  const bad = (what: string) => new VmpodError("Internal", `${where}: ${what}`);
  if (!isObject(doc)) throw bad("the result is not a JSON object");
  const version = doc.cniVersion;
  if (typeof version !== "string" || !SUPPORTED_CNI_VERSIONS.includes(version)) throw bad(`result cniVersion ${JSON.stringify(version)} is not one this runtime reads`);
  const interfaces = list(doc.interfaces, "interfaces", bad).map((v, i): CniInterface => {
    if (!isObject(v) || typeof v.name !== "string") throw bad(`interfaces[${i}] has no name`);
    return {
      name: v.name,
      ...(typeof v.mac === "string" && v.mac !== "" ? { mac: v.mac.toLowerCase() } : {}),
      ...(typeof v.mtu === "number" && v.mtu > 0 ? { mtu: v.mtu } : {}),
      ...(typeof v.sandbox === "string" && v.sandbox !== "" ? { sandbox: v.sandbox } : {}),
    };
  });
  const ips = list(doc.ips, "ips", bad).map((v, i): CniIp => {
    if (!isObject(v)) throw bad(`ips[${i}] is not an object`);
    const family = cidrFamily(v.address);
    if (family === undefined) throw bad(`ips[${i}].address ${JSON.stringify(v.address)} is not an address with a prefix length`);
    if (version !== "1.0.0" && v.version !== undefined && v.version !== String(family)) throw bad(`ips[${i}] says version ${JSON.stringify(v.version)} for ${String(v.address)}`);
    if (v.gateway !== undefined && isIP(String(v.gateway)) !== family) throw bad(`ips[${i}].gateway ${JSON.stringify(v.gateway)} is not an IPv${family} address`);
    if (v.interface !== undefined && (typeof v.interface !== "number" || !Number.isInteger(v.interface) || v.interface < 0 || v.interface >= interfaces.length)) {
      throw bad(`ips[${i}].interface ${JSON.stringify(v.interface)} names no interface`);
    }
    return {
      family,
      address: v.address as string,
      ...(typeof v.gateway === "string" ? { gateway: v.gateway } : {}),
      ...(typeof v.interface === "number" ? { interface: v.interface } : {}),
    };
  });
  const routes = list(doc.routes, "routes", bad).map((v, i): CniRoute => {
    if (!isObject(v) || cidrFamily(v.dst) === undefined) throw bad(`routes[${i}].dst is not a destination with a prefix length`);
    if (v.gw !== undefined && (typeof v.gw !== "string" || isIP(v.gw) !== cidrFamily(v.dst))) throw bad(`routes[${i}].gw ${JSON.stringify(v.gw)} is not an address of the destination's family`);
    return { dst: v.dst as string, ...(typeof v.gw === "string" ? { gw: v.gw } : {}) };
  });
  const dns = isObject(doc.dns) ? doc.dns : {};
  return {
    cniVersion: version,
    interfaces,
    ips,
    routes,
    dns: {
      nameservers: strings(dns.nameservers),
      ...(typeof dns.domain === "string" && dns.domain !== "" ? { domain: dns.domain } : {}),
      search: strings(dns.search),
      options: strings(dns.options),
    },
  };
}

/** The result as an object of CNI version `version`, to hand to a plugin as prevResult or to keep in the cache. */
export function encodeCniResult(result: CniResult, version: string): Record<string, unknown> {
  const tagged = version !== "1.0.0";
  const dns: Record<string, unknown> = {};
  if (result.dns.nameservers.length > 0) dns.nameservers = result.dns.nameservers;
  if (result.dns.domain !== undefined) dns.domain = result.dns.domain;
  if (result.dns.search.length > 0) dns.search = result.dns.search;
  if (result.dns.options.length > 0) dns.options = result.dns.options;
  return {
    cniVersion: version,
    ...(result.interfaces.length > 0 ? { interfaces: result.interfaces.map((i) => ({ ...i })) } : {}),
    ...(result.ips.length > 0
      ? {
          ips: result.ips.map((ip) => ({
            ...(tagged ? { version: String(ip.family) } : {}),
            ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
            address: ip.address,
            ...(ip.gateway !== undefined ? { gateway: ip.gateway } : {}),
          })),
        }
      : {}),
    ...(result.routes.length > 0 ? { routes: result.routes.map((r) => ({ ...r })) } : {}),
    dns,
  };
}

/** 4 or 6 for "address/prefix" with a prefix length valid for its family; undefined otherwise. */
export function cidrFamily(value: unknown): 4 | 6 | undefined {
  if (typeof value !== "string") return undefined;
  const slash = value.lastIndexOf("/");
  if (slash < 0) return undefined;
  const family = isIP(value.slice(0, slash));
  const prefix = value.slice(slash + 1);
  if (family === 0 || !/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128)) return undefined;
  return family as 4 | 6;
}

function list(v: unknown, key: string, bad: (what: string) => VmpodError): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(`"${key}" is not a list`);
  return v as unknown[];
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((s): s is string => typeof s === "string") : [];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}
