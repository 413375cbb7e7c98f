/**
 * Domain types ↔ the agent protocol's messages. Generated types stay in this
 * layer: callers speak OciSpec and plain objects.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { OciLinux, OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import {
  IPFamily,
  type Interface,
  type InterfaceSchema,
  type LinuxResourcesSchema,
  type LinuxSchema,
  type ProcessSchema,
  type Route,
  type RouteSchema,
  type SpecSchema,
  type StatsContainerResponse,
  type StorageSchema,
} from "../gen/agent_pb.js";
import type { InterfaceConfig, InterfaceStatus, IpFamily, RouteConfig, RouteScope } from "./network-types.js";

/**
 * A filesystem the guest agent provides to the sandbox or a container,
 * mounted once per mount point and counted:
 * - "virtio-fs": a shared directory; source is its tag.
 * - "local": a fresh directory in the guest.
 * - "scsi": a disk added with Hypervisor.addDevice; source is its SCSI
 *   address "TARGET:LUN" (AttachedDevice.source), fstype its file system
 *   ("erofs" for an image layer), options e.g. ["ro"].
 * - "overlayfs": a container's root filesystem; options
 *   ["lowerdir=TOP:...:BOTTOM", mount flags...], each lower directory an
 *   acquired storage's mount point or under one; the agent makes the upper
 *   and work directories itself (in its tmpfs) and removes them on release.
 * A container's storages are acquired in order (layers before the overlay)
 * and released in reverse.
 */
export interface Storage {
  readonly driver: "virtio-fs" | "local" | "scsi" | "overlayfs";
  readonly source: string;
  readonly fstype?: string;
  readonly options?: readonly string[];
  readonly mountPoint: string;
}

export interface ContainerStats {
  /** Cumulative CPU time, nanoseconds. */
  readonly cpuUsageNs: bigint;
  readonly memoryUsageBytes: bigint;
  readonly memoryLimitBytes: bigint;
  /** memory.stat counters (anon, file, inactive_file, ...). */
  readonly memoryStats: Readonly<Record<string, bigint>>;
  readonly pids: bigint;
}

export function storageToProto(s: Storage): MessageInitShape<typeof StorageSchema> {
  return { driver: s.driver, source: s.source, fstype: s.fstype ?? "", options: [...(s.options ?? [])], mountPoint: s.mountPoint };
}

export function specToProto(spec: OciSpec): MessageInitShape<typeof SpecSchema> {
  return {
    Version: spec.ociVersion,
    Hostname: spec.hostname ?? "",
    Annotations: { ...(spec.annotations ?? {}) },
    Mounts: (spec.mounts ?? []).map((m) => ({ destination: m.destination, source: m.source ?? "", type: m.type ?? "", options: [...(m.options ?? [])] })),
    ...(spec.process ? { Process: processToProto(spec.process) } : {}),
    ...(spec.root ? { Root: { Path: spec.root.path, Readonly: spec.root.readonly ?? false } } : {}),
    ...(spec.linux ? { Linux: linuxToProto(spec.linux) } : {}),
  };
}

export function processToProto(p: OciProcess): MessageInitShape<typeof ProcessSchema> {
  const caps = p.capabilities;
  return {
    Terminal: p.terminal ?? false,
    ...(p.consoleSize ? { ConsoleSize: { Height: p.consoleSize.height, Width: p.consoleSize.width } } : {}),
    User: {
      UID: p.user.uid,
      GID: p.user.gid,
      AdditionalGids: [...(p.user.additionalGids ?? [])],
      Username: p.user.username ?? "",
    },
    Args: [...p.args],
    Env: [...(p.env ?? [])],
    Cwd: p.cwd,
    ...(caps
      ? {
          Capabilities: {
            Bounding: [...(caps.bounding ?? [])],
            Effective: [...(caps.effective ?? [])],
            Inheritable: [...(caps.inheritable ?? [])],
            Permitted: [...(caps.permitted ?? [])],
            Ambient: [...(caps.ambient ?? [])],
          },
        }
      : {}),
    Rlimits: (p.rlimits ?? []).map((r) => ({ Type: r.type, Hard: BigInt(r.hard), Soft: BigInt(r.soft) })),
    NoNewPrivileges: p.noNewPrivileges ?? false,
    ApparmorProfile: p.apparmorProfile ?? "",
    OOMScoreAdj: BigInt(p.oomScoreAdj ?? 0),
    SelinuxLabel: p.selinuxLabel ?? "",
  };
}

function linuxToProto(l: OciLinux): MessageInitShape<typeof LinuxSchema> {
  return {
    Sysctl: { ...(l.sysctl ?? {}) },
    ...(l.resources ? { Resources: resourcesToProto(l.resources) } : {}),
    CgroupsPath: l.cgroupsPath ?? "",
    Namespaces: (l.namespaces ?? []).map((n) => ({ Type: n.type, Path: n.path ?? "" })),
    Devices: (l.devices ?? []).map((d) => ({
      Path: d.path,
      Type: d.type,
      Major: BigInt(d.major),
      Minor: BigInt(d.minor),
      FileMode: d.fileMode ?? 0,
      UID: d.uid ?? 0,
      GID: d.gid ?? 0,
    })),
    ...(l.seccomp
      ? {
          Seccomp: {
            DefaultAction: l.seccomp.defaultAction,
            Architectures: [...(l.seccomp.architectures ?? [])],
            Flags: [...(l.seccomp.flags ?? [])],
            Syscalls: (l.seccomp.syscalls ?? []).map((s) => ({
              Names: [...s.names],
              Action: s.action,
              ...(s.errnoRet === undefined ? {} : { ErrnoRet: { case: "errnoret" as const, value: s.errnoRet } }),
              Args: (s.args ?? []).map((a) => ({ Index: BigInt(a.index), Value: BigInt(a.value), ValueTwo: BigInt(a.valueTwo ?? 0), Op: a.op })),
            })),
          },
        }
      : {}),
    RootfsPropagation: l.rootfsPropagation ?? "",
    MaskedPaths: [...(l.maskedPaths ?? [])],
    ReadonlyPaths: [...(l.readonlyPaths ?? [])],
  };
}

export function resourcesToProto(r: OciResources): MessageInitShape<typeof LinuxResourcesSchema> {
  return {
    Devices: (r.devices ?? []).map((d) => ({
      Allow: d.allow,
      Type: d.type ?? "a",
      Major: BigInt(d.major ?? -1),
      Minor: BigInt(d.minor ?? -1),
      Access: d.access ?? "rwm",
    })),
    ...(r.memory
      ? {
          Memory: {
            Limit: BigInt(r.memory.limit ?? 0),
            Reservation: BigInt(r.memory.reservation ?? 0),
            Swap: BigInt(r.memory.swap ?? 0),
            Swappiness: BigInt(r.memory.swappiness ?? 0),
            DisableOOMKiller: r.memory.disableOOMKiller ?? false,
          },
        }
      : {}),
    ...(r.cpu
      ? {
          CPU: {
            Shares: BigInt(r.cpu.shares ?? 0),
            Quota: BigInt(r.cpu.quota ?? 0),
            Period: BigInt(r.cpu.period ?? 0),
            Cpus: r.cpu.cpus ?? "",
            Mems: r.cpu.mems ?? "",
          },
        }
      : {}),
    ...(r.pids ? { Pids: { Limit: BigInt(r.pids.limit) } } : {}),
  };
}

export function statsFromProto(r: StatsContainerResponse): ContainerStats {
  const cg = r.cgroupStats;
  return {
    cpuUsageNs: cg?.cpuStats?.cpuUsage?.totalUsage ?? 0n,
    memoryUsageBytes: cg?.memoryStats?.usage?.usage ?? 0n,
    memoryLimitBytes: cg?.memoryStats?.usage?.limit ?? 0n,
    memoryStats: { ...(cg?.memoryStats?.stats ?? {}) },
    pids: cg?.pidsStats?.current ?? 0n,
  };
}

/** The kernel's route scopes (rtnetlink's RT_SCOPE_*), as the agent protocol carries them. */
const SCOPE_NUMBERS: Readonly<Record<RouteScope, number>> = { universe: 0, link: 253, host: 254 };
const IFF_UP = 1;

export function interfaceToProto(i: InterfaceConfig): MessageInitShape<typeof InterfaceSchema> {
  return {
    device: i.name,
    name: i.name,
    hwAddr: i.mac,
    mtu: BigInt(i.mtu),
    IPAddresses: i.addresses.map((a) => ({ family: familyToProto(a.family), address: a.address, mask: String(a.prefixLength) })),
  };
}

export function interfaceFromProto(i: Interface): InterfaceStatus {
  return {
    name: i.name,
    mac: i.hwAddr,
    mtu: Number(i.mtu),
    up: (i.rawFlags & IFF_UP) !== 0,
    addresses: i.IPAddresses.map((a) => ({ family: familyFromProto(a.family), address: a.address, prefixLength: Number(a.mask) })),
  };
}

/** Kata's conventions: the default route's destination is empty; the scope a number. */
export function routeToProto(r: RouteConfig): MessageInitShape<typeof RouteSchema> {
  const isDefault = r.destination === (r.family === 4 ? "0.0.0.0/0" : "::/0") || r.destination === "default";
  return {
    family: familyToProto(r.family),
    dest: isDefault ? "" : r.destination,
    gateway: r.gateway ?? "",
    device: r.device,
    source: r.source ?? "",
    scope: SCOPE_NUMBERS[r.scope ?? (r.gateway === undefined ? "link" : "universe")],
  };
}

export function routeFromProto(r: Route): RouteConfig {
  const family = familyFromProto(r.family);
  // Scopes between universe and link (site) read as universe.
  const scope: RouteScope = r.scope === SCOPE_NUMBERS.host ? "host" : r.scope === SCOPE_NUMBERS.link ? "link" : "universe";
  return {
    family,
    destination: r.dest === "" ? (family === 4 ? "0.0.0.0/0" : "::/0") : r.dest,
    device: r.device,
    scope,
    ...(r.gateway === "" ? {} : { gateway: r.gateway }),
    ...(r.source === "" ? {} : { source: r.source }),
  };
}

function familyToProto(family: IpFamily): IPFamily {
  return family === 4 ? IPFamily.v4 : IPFamily.v6;
}

function familyFromProto(family: IPFamily): IpFamily {
  return family === IPFamily.v6 ? 6 : 4;
}
