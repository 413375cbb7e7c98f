/**
 * A failed plugin run as a VmpodError: the CNI error object the plugin
 * printed on stdout (code, msg, details) gives the message and, by its code,
 * the kind; a plugin that printed none is described by its stderr.
 */
import { VmpodError, type ErrorKind } from "../common/errors.js";

export interface CniErrorObject {
  readonly code: number;
  readonly msg: string;
  readonly details?: string;
}

/** The kind of a CNI error code (the spec's well-known codes; plugin-specific ones are Internal). */
export function kindOfCniCode(code: number): ErrorKind {
  switch (code) {
    case 1: // incompatible CNI version
      return "FailedPrecondition";
    case 2: // unsupported field in the network configuration
    case 4: // invalid necessary environment variables
    case 6: // failed to decode content
    case 7: // invalid network configuration
      return "InvalidArgument";
    case 3: // container unknown or does not exist
      return "NotFound";
    case 11: // try again later
    case 50: // the plugin is not available
    case 51: // the plugin is not available, existing containers may be damaged
      return "Unavailable";
    default: // 5 (I/O failure) and plugin-specific codes
      return "Internal";
  }
}

/** Reads a CNI error object from a plugin's stdout; undefined if it printed none. */
export function parseCniError(stdout: string): CniErrorObject | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(stdout);
  } catch {
    return undefined;
  }
  if (doc === null || typeof doc !== "object") return undefined;
  const e = doc as { code?: unknown; msg?: unknown; details?: unknown };
  if (typeof e.code !== "number" || !Number.isInteger(e.code)) return undefined;
  return {
    code: e.code,
    msg: typeof e.msg === "string" ? e.msg : "",
    ...(typeof e.details === "string" && e.details !== "" ? { details: e.details } : {}),
  };
}

/** The error of a plugin that exited with `exitCode` (not 0). */
export function pluginFailure(type: string, command: string, exitCode: number, stdout: string, stderr: string): VmpodError {
  const what = `CNI plugin ${type} ${command}`;
  const e = parseCniError(stdout);
  if (e) {
    const text = `${e.msg || "failed"}${e.details ? ` (${e.details})` : ""}`;
    return new VmpodError(kindOfCniCode(e.code), `${what}: ${text} [CNI error ${e.code}]`);
  }
  const said = (stderr.trim() || stdout.trim()).split("\n").slice(-5).join("; ");
  return new VmpodError("Internal", `${what}: exit ${exitCode}${said ? `: ${said}` : ""}`);
}
