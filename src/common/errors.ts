/**
 * The one error type of vmpod. Every failure that crosses a layer is a
 * VmpodError with a closed `kind`; context is added by wrapping with `cause`,
 * one short step name per layer ("start vm: connect agent: ...").
 */
export type ErrorKind =
  | "NotFound"
  | "AlreadyExists"
  | "InvalidArgument"
  | "FailedPrecondition"
  | "ResourceExhausted"
  | "Unavailable"
  | "DeadlineExceeded"
  | "Canceled"
  | "Unimplemented"
  | "Internal";

export const ERROR_KINDS: readonly ErrorKind[] = [
  "NotFound",
  "AlreadyExists",
  "InvalidArgument",
  "FailedPrecondition",
  "ResourceExhausted",
  "Unavailable",
  "DeadlineExceeded",
  "Canceled",
  "Unimplemented",
  "Internal",
];

export class VmpodError extends Error {
  readonly kind: ErrorKind;

  constructor(kind: ErrorKind, message: string, options?: { cause?: unknown }) {
    super(options?.cause === undefined ? message : `${message}: ${messageOf(options.cause)}`, options);
    this.kind = kind;
    this.name = "VmpodError";
  }
}

export function isErrorKind(value: unknown): value is ErrorKind {
  return typeof value === "string" && (ERROR_KINDS as readonly string[]).includes(value);
}

/** The message of anything thrown. */
export function messageOf(err: unknown): string {
  // `await using`: the step's own error, then the cleanup's that failed after it.
  if (isSuppressedError(err)) return `${messageOf(err.suppressed)}; cleaning up after it failed too: ${messageOf(err.error)}`;
  if (err instanceof Error) return err.message;
  return String(err);
}

function isSuppressedError(err: unknown): err is Error & { error: unknown; suppressed: unknown } {
  return err instanceof Error && err.name === "SuppressedError" && "suppressed" in err && "error" in err;
}

/**
 * Adds a step name to an error. The kind of the innermost VmpodError is kept;
 * anything else becomes `fallback` (Internal unless said otherwise).
 */
export function wrap(step: string, err: unknown, fallback: ErrorKind = "Internal"): VmpodError {
  return new VmpodError(kindOf(err) ?? fallback, step, { cause: err });
}

/**
 * The kind of an error: walks `cause`, AggregateError.errors and
 * SuppressedError.suppressed, returning the first VmpodError kind found.
 */
export function kindOf(err: unknown, seen = new Set<unknown>()): ErrorKind | undefined {
  if (err === null || typeof err !== "object" || seen.has(err)) return undefined;
  seen.add(err);
  if (err instanceof VmpodError) return err.kind;
  const e = err as { name?: unknown; code?: unknown; cause?: unknown; errors?: unknown; suppressed?: unknown; error?: unknown };
  if (e.name === "AbortError") return "Canceled";
  if (e.name === "TimeoutError") return "DeadlineExceeded";
  const fromCause = kindOf(e.cause, seen);
  if (fromCause) return fromCause;
  if (Array.isArray(e.errors)) {
    for (const inner of e.errors) {
      const k = kindOf(inner, seen);
      if (k) return k;
    }
  }
  // A SuppressedError's `suppressed` is what went wrong first; `error` the cleanup after it.
  return kindOf(e.suppressed, seen) ?? kindOf(e.error, seen);
}

export const notFound = (message: string, cause?: unknown) => new VmpodError("NotFound", message, cause === undefined ? undefined : { cause });
export const invalidArgument = (message: string, cause?: unknown) =>
  new VmpodError("InvalidArgument", message, cause === undefined ? undefined : { cause });
export const failedPrecondition = (message: string, cause?: unknown) =>
  new VmpodError("FailedPrecondition", message, cause === undefined ? undefined : { cause });
export const unavailable = (message: string, cause?: unknown) =>
  new VmpodError("Unavailable", message, cause === undefined ? undefined : { cause });
export const internal = (message: string, cause?: unknown) => new VmpodError("Internal", message, cause === undefined ? undefined : { cause });
export const deadlineExceeded = (message: string, cause?: unknown) =>
  new VmpodError("DeadlineExceeded", message, cause === undefined ? undefined : { cause });
