/** Failures of libc calls, by errno name (kept apart from libc.ts so that importing it loads no native code). */
import { constants } from "node:os";

const ERRNO_NAMES = new Map<number, string>(Object.entries(constants.errno).map(([name, value]) => [value, name]));

export class ErrnoError extends Error {
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call}: ${ERRNO_NAMES.get(errno) ?? `errno ${errno}`}`);
    this.name = "ErrnoError";
  }

  get code(): string {
    return ERRNO_NAMES.get(this.errno) ?? `E${this.errno}`;
  }
}

/** True for an ErrnoError (or a Node system error) with this errno name. */
export function isErrno(err: unknown, code: string): boolean {
  if (err instanceof ErrnoError) return err.code === code;
  return typeof err === "object" && err !== null && (err as { code?: unknown }).code === code;
}
