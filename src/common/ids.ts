import { randomBytes } from "node:crypto";

/** A new 64-hex-character id, the form container runtimes use for pods and containers. */
export function newId(): string {
  return randomBytes(32).toString("hex");
}

const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/** True for ids that are safe to use as a single path component. */
export function isSafeId(id: string): boolean {
  return SAFE_ID.test(id) && id !== "." && id !== "..";
}
