/**
 * Checks of CRI requests at the edge, before anything reaches the runtime:
 * each failure is INVALID_ARGUMENT and names the field, in the proto's own
 * spelling ("config.metadata.name"), so a client can tell what to fix.
 */
import { posix } from "node:path";
import { VmpodError } from "../common/errors.js";

export function invalid(field: string, problem: string): VmpodError {
  return new VmpodError("InvalidArgument", `${field}: ${problem}`);
}

/** A message field that must be set. */
export function required<T>(value: T | undefined, field: string): T {
  if (value === undefined) throw invalid(field, "is required");
  return value;
}

/** A string field that must not be empty. */
export function nonEmpty(value: string, field: string): string {
  if (value === "") throw invalid(field, "must not be empty");
  return value;
}

/** A pod or container id: set, and a plain name. */
export function requireId(value: string, field: string): string {
  nonEmpty(value, field);
  if (value.includes("/") || value.includes("\0")) throw invalid(field, `${JSON.stringify(value)} is not an id`);
  return value;
}

/** An absolute path without `..` components. */
export function absolutePath(value: string, field: string): string {
  if (!posix.isAbsolute(value)) throw invalid(field, `${JSON.stringify(value)} is not an absolute path`);
  if (value.includes("\0")) throw invalid(field, "contains a NUL byte");
  if (value.split("/").includes("..")) throw invalid(field, `${JSON.stringify(value)} has ".." components`);
  return value;
}

/** A relative path that stays below the directory it is relative to. */
export function relativePath(value: string, field: string): string {
  if (posix.isAbsolute(value)) throw invalid(field, `${JSON.stringify(value)} must be relative`);
  if (value.includes("\0")) throw invalid(field, "contains a NUL byte");
  const normal = posix.normalize(value);
  if (normal === "." || normal === ".." || normal.startsWith("../") || value.endsWith("/")) throw invalid(field, `${JSON.stringify(value)} does not name a file below its directory`);
  return normal;
}

/** An int64 as a JS number, refusing what would lose precision. */
export function toNumber(value: bigint, field: string): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < BigInt(Number.MIN_SAFE_INTEGER)) throw invalid(field, `${value} is out of range`);
  return Number(value);
}

/** A port number (1-65535), or 0 where 0 means none. */
export function port(value: number, field: string, options: { readonly zero: boolean }): number {
  if (!Number.isInteger(value) || value < (options.zero ? 0 : 1) || value > 65535) throw invalid(field, `${value} is not a port number`);
  return value;
}
