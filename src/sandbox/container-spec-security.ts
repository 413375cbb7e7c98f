/**
 * A container's security settings in its OCI spec: capabilities (the
 * runtime's default set, then the CRI's add and drop with "ALL"), the
 * masked and read-only /proc and /sys paths, seccomp (vmpod's own default
 * profile, a localhost profile file, or none) and AppArmor (host containers
 * only: a pod VM's kernel has no AppArmor).
 */
import { VmpodError } from "../common/errors.js";
import type { OciProcess, OciSeccomp } from "../common/oci-spec.js";
import { parseSeccompProfile } from "./container-spec-seccomp.js";
import { runtimeDefaultSeccomp } from "./seccomp-default.js";
import type { ContainerSecurity, SecurityProfile } from "./types.js";

/** Every capability Linux has (up to CAP_CHECKPOINT_RESTORE, 6.1's last). */
export const ALL_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

/** What a container gets when its config asks for nothing else. */
export const DEFAULT_CAPABILITIES: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

export const DEFAULT_MASKED_PATHS: readonly string[] = [
  "/proc/acpi",
  "/proc/asound",
  "/proc/kcore",
  "/proc/keys",
  "/proc/latency_stats",
  "/proc/timer_list",
  "/proc/timer_stats",
  "/proc/sched_debug",
  "/proc/scsi",
  "/sys/firmware",
  "/sys/devices/virtual/powercap",
];

export const DEFAULT_READONLY_PATHS: readonly string[] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/** "net_admin", "NET_ADMIN", "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; unknown names are refused. */
export function capabilityName(name: string): string {
  const upper = name.toUpperCase();
  const full = upper.startsWith("CAP_") ? upper : `CAP_${upper}`;
  if (!ALL_CAPABILITIES.includes(full)) throw new VmpodError("InvalidArgument", `unknown capability ${JSON.stringify(name)}`);
  return full;
}

/** The process's capability sets. Ambient capabilities are also in every other set, as the kernel requires. */
export function capabilitiesFor(security: ContainerSecurity): NonNullable<OciProcess["capabilities"]> {
  let caps: string[];
  const ambient: string[] = [];
  if (security.privileged) {
    caps = [...ALL_CAPABILITIES];
  } else {
    caps = [...DEFAULT_CAPABILITIES];
    const add = security.capabilities?.add ?? [];
    const drop = security.capabilities?.drop ?? [];
    const isAll = (c: string) => c.toUpperCase() === "ALL";
    if (add.some(isAll)) caps = [...ALL_CAPABILITIES];
    if (drop.some(isAll)) caps = [];
    for (const c of add) if (!isAll(c)) caps.push(capabilityName(c));
    const dropped = new Set(drop.filter((c) => !isAll(c)).map(capabilityName));
    caps = [...new Set(caps)].filter((c) => !dropped.has(c));
  }
  for (const c of security.capabilities?.addAmbient ?? []) ambient.push(capabilityName(c));
  const withAmbient = [...new Set([...caps, ...ambient])];
  return {
    bounding: withAmbient,
    effective: withAmbient,
    permitted: withAmbient,
    inheritable: [...new Set(ambient)],
    ambient: [...new Set(ambient)],
  };
}

export function maskedPathsFor(security: ContainerSecurity): { maskedPaths: string[]; readonlyPaths: string[] } {
  if (security.privileged) return { maskedPaths: [], readonlyPaths: [] };
  return {
    maskedPaths: [...(security.maskedPaths ?? DEFAULT_MASKED_PATHS)],
    readonlyPaths: [...(security.readonlyPaths ?? DEFAULT_READONLY_PATHS)],
  };
}

/** The localhost reference as a path: kubelet sends the file's absolute path, older ones "localhost/<path>". */
function localhostPath(kind: string, profile: SecurityProfile): string {
  const ref = profile.localhostRef ?? "";
  const path = ref.startsWith("localhost/") ? ref.slice("localhost/".length) : ref;
  if (path === "") throw new VmpodError("InvalidArgument", `the ${kind} profile is "localhost" but names no profile`);
  return path;
}

export interface SeccompContext {
  readonly handler: "vm" | "host";
  readonly privileged: boolean;
  /** The capabilities in the process's bounding set. */
  readonly capabilities: ReadonlySet<string>;
  readonly readProfile: (path: string) => Promise<string>;
}

/** The seccomp filter of a container, or undefined for none. */
export async function seccompFor(profile: SecurityProfile | undefined, ctx: SeccompContext): Promise<OciSeccomp | undefined> {
  if (ctx.privileged || profile === undefined || profile.type === "unconfined") return undefined;
  if (profile.type === "runtime-default") return runtimeDefaultSeccomp(ctx.capabilities);
  const path = localhostPath("seccomp", profile);
  if (!path.startsWith("/")) throw new VmpodError("InvalidArgument", `the seccomp profile ${JSON.stringify(path)} is not an absolute path`);
  let text: string;
  try {
    text = await ctx.readProfile(path);
  } catch (err) {
    throw new VmpodError("InvalidArgument", `cannot read the seccomp profile ${path}`, { cause: err });
  }
  return parseSeccompProfile(text, { ...ctx, source: path });
}

/**
 * The AppArmor profile the process gets, or undefined for none.
 * runtime-default is no profile: vmpod ships none of its own. A localhost
 * profile is refused in a pod VM (its kernel has no AppArmor) and on a host
 * without AppArmor; it applies to privileged containers too.
 */
export function apparmorFor(profile: SecurityProfile | undefined, ctx: { handler: "vm" | "host"; hostAppArmor: boolean }): string | undefined {
  if (profile === undefined || profile.type === "unconfined" || profile.type === "runtime-default") return undefined;
  const name = localhostPath("AppArmor", profile);
  if (ctx.handler === "vm") {
    throw new VmpodError("InvalidArgument", `the AppArmor profile ${JSON.stringify(name)} cannot be applied: a pod VM's kernel has no AppArmor (use runtime-default or unconfined, or the runc handler)`);
  }
  if (!ctx.hostAppArmor) throw new VmpodError("InvalidArgument", `the AppArmor profile ${JSON.stringify(name)} cannot be applied: AppArmor is not enabled on this node`);
  return name;
}
