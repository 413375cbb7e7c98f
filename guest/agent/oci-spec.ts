/**
 * Kata's protobuf rendition of the OCI runtime spec → the JSON form of the
 * OCI runtime spec (config.json, process.json, resources for `crun update`),
 * field by field. Pure. Proto3 cannot tell an unset scalar from its zero
 * value, so zero values of optional settings are left out (a memory limit of
 * 0 is no limit); for device cgroup rules a negative major or minor is the
 * wildcard, as the host sends it.
 *
 * 64-bit values stay bigints end to end (rlimits of RLIM_INFINITY, seccomp
 * argument masks) and are written as JSON numbers by renderJson.
 */
import type {
  LinuxDevice,
  LinuxResources,
  LinuxSeccomp,
  Mount,
  Process,
  Spec,
} from "../../src/gen/agent_pb.js";

export type JsonValue = string | number | bigint | boolean | null | JsonValue[] | { [key: string]: JsonValue | undefined };

export interface OciConfig {
  ociVersion: string;
  process?: OciProcessJson;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  mounts: OciMountJson[];
  annotations?: Record<string, string>;
  linux?: OciLinuxJson;
}

export interface OciProcessJson {
  terminal: boolean;
  consoleSize?: { height: number; width: number };
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env?: string[];
  cwd: string;
  capabilities?: Record<"bounding" | "effective" | "inheritable" | "permitted" | "ambient", string[]>;
  rlimits?: { type: string; hard: bigint; soft: bigint }[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}

export interface OciMountJson {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export interface OciLinuxJson {
  sysctl?: Record<string, string>;
  resources?: OciResourcesJson;
  cgroupsPath?: string;
  namespaces?: { type: string; path?: string }[];
  devices?: { path: string; type: string; major: bigint; minor: bigint; fileMode?: number; uid?: number; gid?: number }[];
  seccomp?: JsonValue;
  rootfsPropagation?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
}

export interface OciResourcesJson {
  devices?: { allow: boolean; type?: string; major?: bigint; minor?: bigint; access?: string }[];
  memory?: { limit?: bigint; reservation?: bigint; swap?: bigint; swappiness?: bigint; disableOOMKiller?: boolean };
  cpu?: { shares?: bigint; quota?: bigint; period?: bigint; cpus?: string; mems?: string };
  pids?: { limit: bigint };
}

export function specToOci(spec: Spec): OciConfig {
  const out: OciConfig = {
    ociVersion: spec.Version || "1.0.2",
    ...(spec.Process ? { process: processToOci(spec.Process) } : {}),
    ...(spec.Root ? { root: { path: spec.Root.Path, ...(spec.Root.Readonly ? { readonly: true } : {}) } } : {}),
    ...(spec.Hostname !== "" ? { hostname: spec.Hostname } : {}),
    mounts: spec.Mounts.map(mountToOci),
  };
  if (Object.keys(spec.Annotations).length > 0) out.annotations = { ...spec.Annotations };
  const l = spec.Linux;
  if (l) {
    const linux: OciLinuxJson = {};
    if (Object.keys(l.Sysctl).length > 0) linux.sysctl = { ...l.Sysctl };
    if (l.Resources) linux.resources = resourcesToOci(l.Resources);
    if (l.CgroupsPath !== "") linux.cgroupsPath = l.CgroupsPath;
    if (l.Namespaces.length > 0) linux.namespaces = l.Namespaces.map((n) => ({ type: n.Type, ...(n.Path !== "" ? { path: n.Path } : {}) }));
    if (l.Devices.length > 0) linux.devices = l.Devices.map(deviceToOci);
    if (l.Seccomp) linux.seccomp = seccompToOci(l.Seccomp);
    if (l.RootfsPropagation !== "") linux.rootfsPropagation = l.RootfsPropagation;
    if (l.MaskedPaths.length > 0) linux.maskedPaths = [...l.MaskedPaths];
    if (l.ReadonlyPaths.length > 0) linux.readonlyPaths = [...l.ReadonlyPaths];
    out.linux = linux;
  }
  return out;
}

export function processToOci(p: Process): OciProcessJson {
  const out: OciProcessJson = {
    terminal: p.Terminal,
    ...(p.ConsoleSize && (p.ConsoleSize.Height > 0 || p.ConsoleSize.Width > 0)
      ? { consoleSize: { height: p.ConsoleSize.Height, width: p.ConsoleSize.Width } }
      : {}),
    user: { uid: p.User?.UID ?? 0, gid: p.User?.GID ?? 0, ...(p.User && p.User.AdditionalGids.length > 0 ? { additionalGids: [...p.User.AdditionalGids] } : {}) },
    args: [...p.Args],
    ...(p.Env.length > 0 ? { env: [...p.Env] } : {}),
    cwd: p.Cwd || "/",
  };
  const caps = p.Capabilities;
  if (caps) {
    out.capabilities = {
      bounding: [...caps.Bounding],
      effective: [...caps.Effective],
      inheritable: [...caps.Inheritable],
      permitted: [...caps.Permitted],
      ambient: [...caps.Ambient],
    };
  }
  if (p.Rlimits.length > 0) out.rlimits = p.Rlimits.map((r) => ({ type: r.Type, hard: r.Hard, soft: r.Soft }));
  if (p.NoNewPrivileges) out.noNewPrivileges = true;
  if (p.ApparmorProfile !== "") out.apparmorProfile = p.ApparmorProfile;
  if (p.OOMScoreAdj !== 0n) out.oomScoreAdj = Number(p.OOMScoreAdj);
  if (p.SelinuxLabel !== "") out.selinuxLabel = p.SelinuxLabel;
  return out;
}

export function resourcesToOci(r: LinuxResources): OciResourcesJson {
  const out: OciResourcesJson = {};
  if (r.Devices.length > 0) {
    out.devices = r.Devices.map((d) => ({
      allow: d.Allow,
      ...(d.Type !== "" ? { type: d.Type } : {}),
      ...(d.Major >= 0n ? { major: d.Major } : {}),
      ...(d.Minor >= 0n ? { minor: d.Minor } : {}),
      ...(d.Access !== "" ? { access: d.Access } : {}),
    }));
  }
  const m = r.Memory;
  if (m) {
    const memory: NonNullable<OciResourcesJson["memory"]> = {};
    if (m.Limit !== 0n) memory.limit = m.Limit;
    if (m.Reservation !== 0n) memory.reservation = m.Reservation;
    if (m.Swap !== 0n) memory.swap = m.Swap;
    if (m.Swappiness !== 0n) memory.swappiness = m.Swappiness;
    if (m.DisableOOMKiller) memory.disableOOMKiller = true;
    out.memory = memory;
  }
  const c = r.CPU;
  if (c) {
    const cpu: NonNullable<OciResourcesJson["cpu"]> = {};
    if (c.Shares !== 0n) cpu.shares = c.Shares;
    if (c.Quota !== 0n) cpu.quota = c.Quota;
    if (c.Period !== 0n) cpu.period = c.Period;
    if (c.Cpus !== "") cpu.cpus = c.Cpus;
    if (c.Mems !== "") cpu.mems = c.Mems;
    out.cpu = cpu;
  }
  if (r.Pids && r.Pids.Limit !== 0n) out.pids = { limit: r.Pids.Limit };
  return out;
}

function mountToOci(m: Mount): OciMountJson {
  return {
    destination: m.destination,
    ...(m.type !== "" ? { type: m.type } : {}),
    ...(m.source !== "" ? { source: m.source } : {}),
    ...(m.options.length > 0 ? { options: [...m.options] } : {}),
  };
}

function deviceToOci(d: LinuxDevice): NonNullable<OciLinuxJson["devices"]>[number] {
  return {
    path: d.Path,
    type: d.Type,
    major: d.Major,
    minor: d.Minor,
    ...(d.FileMode !== 0 ? { fileMode: d.FileMode } : {}),
    uid: d.UID,
    gid: d.GID,
  };
}

function seccompToOci(s: LinuxSeccomp): JsonValue {
  return {
    defaultAction: s.DefaultAction,
    ...(s.Architectures.length > 0 ? { architectures: [...s.Architectures] } : {}),
    ...(s.Flags.length > 0 ? { flags: [...s.Flags] } : {}),
    syscalls: s.Syscalls.map((sc) => ({
      names: [...sc.Names],
      action: sc.Action,
      ...(sc.ErrnoRet.case === "errnoret" ? { errnoRet: sc.ErrnoRet.value } : {}),
      ...(sc.Args.length > 0
        ? { args: sc.Args.map((a) => ({ index: a.Index, value: a.Value, ...(a.ValueTwo !== 0n ? { valueTwo: a.ValueTwo } : {}), op: a.Op })) }
        : {}),
    })),
  };
}

/**
 * JSON text for values that may hold bigints, written as plain JSON numbers
 * (JSON.stringify refuses them, and Number() would round 2^64-1). Keys with
 * undefined values are left out, as JSON.stringify does.
 */
export function renderJson(value: unknown, indent = ""): string {
  const next = indent + "  ";
  if (value === null) return "null";
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`cannot write ${value} as JSON`);
      return String(value);
    case "boolean":
      return value ? "true" : "false";
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (Array.isArray(value)) {
        if (value.length === 0) return "[]";
        return `[\n${value.map((v) => next + renderJson(v, next)).join(",\n")}\n${indent}]`;
      }
      const entries = Object.entries(value as Record<string, unknown>).filter(([, v]) => v !== undefined);
      if (entries.length === 0) return "{}";
      return `{\n${entries.map(([k, v]) => `${next}${JSON.stringify(k)}: ${renderJson(v, next)}`).join(",\n")}\n${indent}}`;
    }
    default:
      throw new TypeError(`cannot write a ${typeof value} as JSON`);
  }
}
