/**
 * Pieces of the CRI's security settings shared by pods and containers:
 * namespace modes, seccomp and AppArmor profiles (the typed field, else the
 * deprecated string), and user namespaces, which vmpod does not offer (the
 * VM is the boundary) and refuses when asked.
 */
import { NamespaceMode as CriNamespaceMode, SecurityProfile_ProfileType, type NamespaceOption, type SecurityProfile as CriSecurityProfile } from "../gen/cri/api_pb.js";
import type { NamespaceMode, SecurityProfile } from "../sandbox/types.js";
import { VmpodError } from "../common/errors.js";
import { invalid } from "./validate.js";

const MODES: Readonly<Record<CriNamespaceMode, NamespaceMode>> = {
  [CriNamespaceMode.POD]: "POD",
  [CriNamespaceMode.CONTAINER]: "CONTAINER",
  [CriNamespaceMode.NODE]: "NODE",
  [CriNamespaceMode.TARGET]: "TARGET",
};

const MODES_BACK: Readonly<Record<NamespaceMode, CriNamespaceMode>> = {
  POD: CriNamespaceMode.POD,
  CONTAINER: CriNamespaceMode.CONTAINER,
  NODE: CriNamespaceMode.NODE,
  TARGET: CriNamespaceMode.TARGET,
};

export function namespaceMode(mode: CriNamespaceMode, field: string): NamespaceMode {
  const m = MODES[mode];
  if (m === undefined) throw invalid(field, `unknown namespace mode ${mode}`);
  return m;
}

export function namespaceModeToCri(mode: NamespaceMode): CriNamespaceMode {
  return MODES_BACK[mode];
}

/** The network, pid and ipc modes (POD when unset); a user namespace of the pod is refused. */
export function namespacesFromCri(options: NamespaceOption | undefined, field: string): { network: NamespaceMode; pid: NamespaceMode; ipc: NamespaceMode; targetId?: string } {
  if (options === undefined) return { network: "POD", pid: "POD", ipc: "POD" };
  const userns = options.usernsOptions;
  if (userns !== undefined && userns.mode === CriNamespaceMode.POD && (userns.uids.length > 0 || userns.gids.length > 0)) {
    throw new VmpodError("InvalidArgument", `${field}.userns_options: user namespaces are not supported (each pod has its own VM)`);
  }
  const out = {
    network: namespaceMode(options.network, `${field}.network`),
    pid: namespaceMode(options.pid, `${field}.pid`),
    ipc: namespaceMode(options.ipc, `${field}.ipc`),
  };
  if (out.pid === "TARGET" && options.targetId === "") throw invalid(`${field}.target_id`, "is required with the TARGET pid mode");
  return options.targetId === "" ? out : { ...out, targetId: options.targetId };
}

/**
 * A profile from the typed field when set, else from the deprecated string
 * ("runtime/default", "docker/default", "unconfined", "localhost/<path>").
 */
export function profileFromCri(profile: CriSecurityProfile | undefined, legacy: string, field: string): SecurityProfile | undefined {
  if (profile !== undefined) {
    switch (profile.profileType) {
      case SecurityProfile_ProfileType.RuntimeDefault:
        return { type: "runtime-default" };
      case SecurityProfile_ProfileType.Unconfined:
        return { type: "unconfined" };
      case SecurityProfile_ProfileType.Localhost:
        if (profile.localhostRef === "") throw invalid(`${field}.localhost_ref`, "is required for a Localhost profile");
        return { type: "localhost", localhostRef: profile.localhostRef };
      default:
        throw invalid(`${field}.profile_type`, `unknown profile type ${String(profile.profileType)}`);
    }
  }
  if (legacy === "") return undefined;
  if (legacy === "runtime/default" || legacy === "docker/default") return { type: "runtime-default" };
  if (legacy === "unconfined") return { type: "unconfined" };
  if (legacy.startsWith("localhost/")) return { type: "localhost", localhostRef: legacy.slice("localhost/".length) };
  throw invalid(field, `unknown profile ${JSON.stringify(legacy)}`);
}

/** Ids from repeated int64 fields. */
export function idList(values: readonly bigint[], field: string): number[] {
  return values.map((v, i) => {
    if (v < 0n || v > 0xffffffffn) throw invalid(`${field}[${i}]`, `${v} is not a valid id`);
    return Number(v);
  });
}

/** A uid or gid from an Int64Value, when set. */
export function optionalId(value: { readonly value: bigint } | undefined, field: string): number | undefined {
  if (value === undefined) return undefined;
  if (value.value < 0n || value.value > 0xffffffffn) throw invalid(field, `${value.value} is not a valid id`);
  return Number(value.value);
}
