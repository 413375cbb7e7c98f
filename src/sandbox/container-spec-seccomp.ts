/**
 * A localhost seccomp profile (the JSON file a pod names) read into the OCI
 * form: either the OCI spec's own `linux.seccomp` object or the richer
 * profile format container engines share (`archMap`, rules with
 * `includes`/`excludes` by capability and architecture). What the OCI
 * runtime could not apply, or the pod VM's agent could not carry, is refused
 * here with the file's name.
 */
import { VmpodError } from "../common/errors.js";
import type { OciSeccomp } from "../common/oci-spec.js";
import { seccompArchitectures } from "./seccomp-default.js";

const ACTIONS = new Set([
  "SCMP_ACT_KILL",
  "SCMP_ACT_KILL_PROCESS",
  "SCMP_ACT_KILL_THREAD",
  "SCMP_ACT_TRAP",
  "SCMP_ACT_ERRNO",
  "SCMP_ACT_TRACE",
  "SCMP_ACT_ALLOW",
  "SCMP_ACT_LOG",
]);
const OPS = new Set(["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"]);
const FLAGS = new Set(["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);

export interface ProfileContext {
  readonly handler: "vm" | "host";
  readonly capabilities: ReadonlySet<string>;
  /** Named in errors. */
  readonly source: string;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);

function strings(v: unknown): string[] | undefined {
  return Array.isArray(v) && v.every((s) => typeof s === "string") ? (v as string[]) : undefined;
}

function uint(v: unknown): number | undefined {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined;
}

/** Does a rule's includes/excludes block select this process? */
function selected(rule: Obj, ctx: ProfileContext, arches: readonly string[], bad: (msg: string) => never): boolean {
  const arch = (process.arch === "x64" ? "amd64" : process.arch).toLowerCase();
  const matches = (block: unknown, what: "includes" | "excludes"): boolean | undefined => {
    if (block === undefined) return undefined;
    if (!isObj(block)) bad(`a rule's ${what} is not an object`);
    const caps = block["caps"] === undefined ? [] : strings(block["caps"]);
    const arch2 = block["arches"] === undefined ? [] : strings(block["arches"]);
    if (caps === undefined || arch2 === undefined) bad(`a rule's ${what} has bad caps or arches`);
    const capHit = caps.length > 0 && caps.some((c) => ctx.capabilities.has(c.toUpperCase().startsWith("CAP_") ? c.toUpperCase() : `CAP_${c.toUpperCase()}`));
    const archHit = arch2.length > 0 && arch2.some((a) => a.toLowerCase() === arch || arches.includes(a));
    if (what === "includes") return (caps.length === 0 || capHit) && (arch2.length === 0 || archHit);
    return capHit || archHit;
  };
  if (matches(rule["includes"], "includes") === false) return false;
  if (matches(rule["excludes"], "excludes") === true) return false;
  return true;
}

export function parseSeccompProfile(text: string, ctx: ProfileContext): OciSeccomp {
  const bad = (msg: string): never => {
    throw new VmpodError("InvalidArgument", `seccomp profile ${ctx.source}: ${msg}`);
  };
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new VmpodError("InvalidArgument", `seccomp profile ${ctx.source} is not JSON`, { cause: err });
  }
  if (!isObj(doc)) return bad("not a JSON object");
  const defaultAction = doc["defaultAction"];
  if (typeof defaultAction !== "string" || !ACTIONS.has(defaultAction)) return bad(`defaultAction ${JSON.stringify(defaultAction)} is not one of ${[...ACTIONS].join(", ")}`);
  if (doc["listenerPath"] !== undefined && doc["listenerPath"] !== "") return bad("a seccomp listener (listenerPath) is not supported");
  const out: OciSeccomp = { defaultAction };
  if (doc["defaultErrnoRet"] !== undefined) {
    const errno = uint(doc["defaultErrnoRet"]);
    if (errno === undefined) return bad("defaultErrnoRet is not a number");
    if (ctx.handler === "vm") return bad("defaultErrnoRet cannot be passed to a pod VM's agent");
    out.defaultErrnoRet = errno;
  }

  const architectures: string[] = [];
  if (doc["architectures"] !== undefined) {
    const a = strings(doc["architectures"]);
    if (a === undefined) return bad("architectures is not a list of names");
    architectures.push(...a);
  }
  if (doc["archMap"] !== undefined) {
    if (!Array.isArray(doc["archMap"])) return bad("archMap is not a list");
    const native = seccompArchitectures()[0];
    for (const entry of doc["archMap"] as unknown[]) {
      if (!isObj(entry) || typeof entry["architecture"] !== "string") return bad("an archMap entry has no architecture");
      if (native !== undefined && entry["architecture"] !== native) continue;
      architectures.push(entry["architecture"], ...(strings(entry["subArchitectures"]) ?? []));
    }
  }
  if (architectures.length > 0) out.architectures = [...new Set(architectures)];

  if (doc["flags"] !== undefined) {
    const flags = strings(doc["flags"]);
    if (flags === undefined) return bad("flags is not a list of names");
    for (const f of flags) if (!FLAGS.has(f)) bad(`unknown flag ${JSON.stringify(f)}`);
    if (flags.length > 0) out.flags = flags;
  }

  const syscalls: NonNullable<OciSeccomp["syscalls"]> = [];
  const rules = doc["syscalls"] ?? [];
  if (!Array.isArray(rules)) return bad("syscalls is not a list");
  for (const rule of rules as unknown[]) {
    if (!isObj(rule)) return bad("a syscalls entry is not an object");
    const names = rule["names"] !== undefined ? strings(rule["names"]) : typeof rule["name"] === "string" ? [rule["name"]] : undefined;
    if (names === undefined || names.length === 0) return bad("a syscalls entry names no system call");
    const action = rule["action"];
    if (typeof action !== "string" || !ACTIONS.has(action)) return bad(`action ${JSON.stringify(action)} of ${names.join(",")} is not one of ${[...ACTIONS].join(", ")}`);
    if (!selected(rule, ctx, out.architectures ?? [], bad)) continue;
    const entry: NonNullable<OciSeccomp["syscalls"]>[number] = { names: [...names], action };
    if (rule["errnoRet"] !== undefined) {
      const errno = uint(rule["errnoRet"]);
      if (errno === undefined) return bad(`errnoRet of ${names.join(",")} is not a number`);
      entry.errnoRet = errno;
    }
    if (rule["args"] !== undefined && rule["args"] !== null) {
      if (!Array.isArray(rule["args"])) return bad(`args of ${names.join(",")} is not a list`);
      const args: NonNullable<typeof entry.args> = [];
      for (const a of rule["args"] as unknown[]) {
        if (!isObj(a)) return bad(`an argument rule of ${names.join(",")} is not an object`);
        const index = uint(a["index"]);
        const value = uint(a["value"]);
        const valueTwo = a["valueTwo"] === undefined ? 0 : uint(a["valueTwo"]);
        const op = a["op"];
        if (index === undefined || index > 5 || value === undefined || valueTwo === undefined) return bad(`an argument rule of ${names.join(",")} has a bad index or value`);
        if (typeof op !== "string" || !OPS.has(op)) return bad(`an argument rule of ${names.join(",")} has an unknown op ${JSON.stringify(op)}`);
        args.push({ index, value, ...(valueTwo !== 0 ? { valueTwo } : {}), op });
      }
      if (args.length > 0) entry.args = args;
    }
    syscalls.push(entry);
  }
  out.syscalls = syscalls;
  return out;
}
