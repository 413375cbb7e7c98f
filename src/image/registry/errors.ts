/**
 * How registry failures become VmpodErrors: by HTTP status (the registry's
 * JSON error codes only add detail to the message), by transport error code
 * (connection, TLS, timeouts), and by the caller's abort.
 */
import { VmpodError, type ErrorKind } from "../../common/errors.js";

/** The kind of error an HTTP status means. */
export function kindOfStatus(status: number): ErrorKind {
  if (status === 404) return "NotFound";
  if (status === 401 || status === 403) return "FailedPrecondition";
  if (status === 429) return "ResourceExhausted";
  if (status >= 500) return "Unavailable";
  if (status === 400) return "InvalidArgument";
  if (status === 405) return "Unimplemented";
  if (status === 408) return "DeadlineExceeded";
  if (status >= 400) return "FailedPrecondition";
  return "Unavailable";
}

const STATUS_WORDS: Readonly<Record<number, string>> = {
  400: "bad request",
  401: "authentication failed",
  403: "access denied",
  404: "not found",
  405: "not supported by the registry",
  408: "timed out",
  429: "too many requests",
  500: "registry error",
  502: "bad gateway",
  503: "service unavailable",
  504: "gateway timeout",
};

/** `what` failed with HTTP `status`; `body` is the registry's answer (JSON errors are summarized). */
export function statusError(what: string, status: number, body?: Uint8Array, extra?: string): VmpodError {
  const words = STATUS_WORDS[status] ?? (status >= 500 ? "registry error" : "unexpected answer");
  const detail = registryErrors(body);
  return new VmpodError(kindOfStatus(status), `${what}: HTTP ${status} ${words}${detail ? ` (${detail})` : ""}${extra ? `; ${extra}` : ""}`);
}

/** "MANIFEST_UNKNOWN: manifest unknown; ..." from `{"errors":[{code, message}]}`, or undefined. */
export function registryErrors(body: Uint8Array | undefined): string | undefined {
  if (body === undefined || body.length === 0 || body.length > 64 * 1024) return undefined;
  try {
    const doc = JSON.parse(Buffer.from(body).toString("utf8")) as { errors?: unknown };
    if (!Array.isArray(doc.errors)) return undefined;
    const parts = doc.errors
      .filter((e): e is Record<string, unknown> => e !== null && typeof e === "object")
      .map((e) => [e["code"], e["message"]].filter((x) => typeof x === "string" && x !== "").join(": "))
      .filter((s) => s !== "");
    return parts.length > 0 ? parts.slice(0, 3).join("; ") : undefined;
  } catch {
    return undefined;
  }
}

const TIMEOUT_CODES = new Set(["UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT", "ETIMEDOUT"]);
const TLS_TRUST_CODES = new Set([
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "SELF_SIGNED_CERT_IN_CHAIN",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "CERT_HAS_EXPIRED",
  "CERT_NOT_YET_VALID",
  "ERR_TLS_CERT_ALTNAME_INVALID",
]);

/**
 * A failure that is not an HTTP answer: the caller's abort (Canceled, or
 * DeadlineExceeded when the signal's reason is a timeout), our timeouts
 * (DeadlineExceeded), everything else on the way (Unavailable).
 * VmpodErrors pass through with `what` added.
 */
export function transportError(what: string, err: unknown, signal?: AbortSignal, registryHost?: string): VmpodError {
  if (signal?.aborted) {
    const reason = signal.reason as { name?: unknown } | undefined;
    if (reason?.name === "TimeoutError") return new VmpodError("DeadlineExceeded", `${what}: the caller's deadline passed`);
    return new VmpodError("Canceled", `${what}: canceled`);
  }
  if (err instanceof VmpodError) return new VmpodError(err.kind, what, { cause: err });
  const code = codeOf(err);
  const message = describe(err);
  if (code !== undefined && TIMEOUT_CODES.has(code)) return new VmpodError("DeadlineExceeded", `${what}: timed out (${message})`);
  if ((err as { name?: unknown } | null)?.name === "AbortError") return new VmpodError("Canceled", `${what}: canceled`);
  if (code !== undefined && TLS_TRUST_CODES.has(code)) {
    const where = registryHost ? `[registries."${registryHost}"]` : "the registry's configuration";
    return new VmpodError("Unavailable", `${what}: TLS: ${message} (add its CA with ca_files in ${where}, or set insecure_skip_verify)`);
  }
  return new VmpodError("Unavailable", `${what}: ${message}`);
}

function codeOf(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 4 && e !== null && typeof e === "object"; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string") return code;
    const inner = (e as { errors?: unknown }).errors;
    e = Array.isArray(inner) && inner.length > 0 ? inner[0] : (e as { cause?: unknown }).cause;
  }
  return undefined;
}

/** The message of a transport error; an AggregateError (one try per address) gives its parts'. */
function describe(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return [...new Set(err.errors.map((e) => describe(e)))].join("; ");
  }
  if (err instanceof Error) {
    const cause = err.cause instanceof Error && err.cause.message !== err.message ? `: ${describe(err.cause)}` : "";
    return (err.message || err.name) + cause;
  }
  return String(err);
}
