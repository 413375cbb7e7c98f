/**
 * How an exec or attach ended, as the client reads it from the error
 * stream: a JSON metav1.Status from protocol v4 on (success, a non-zero
 * exit code kubectl turns into its own exit code, or an internal error),
 * and before v4 nothing on success or the error's text.
 */
import { messageOf } from "../../common/errors.js";

export type Outcome =
  | { readonly kind: "exited"; readonly code: number; readonly command?: readonly string[] }
  | { readonly kind: "failed"; readonly error: unknown };

/** The metav1.Status the v4 and v5 protocols carry, fields in Kubernetes' JSON order. */
export function statusJson(outcome: Outcome): string {
  if (outcome.kind === "exited" && outcome.code === 0) return JSON.stringify({ metadata: {}, status: "Success" });
  if (outcome.kind === "exited") {
    const what = outcome.command ? `error executing command [${outcome.command.join(" ")}], exit code ${outcome.code}` : `exit code ${outcome.code}`;
    return JSON.stringify({
      metadata: {},
      status: "Failure",
      message: `command terminated with non-zero exit code: ${what}`,
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: String(outcome.code) }] },
    });
  }
  const message = `error executing command in container: ${messageOf(outcome.error)}`;
  return JSON.stringify({
    metadata: {},
    status: "Failure",
    message: `Internal error occurred: ${message}`,
    reason: "InternalError",
    details: { causes: [{ message }] },
    code: 500,
  });
}

/** What protocols before v4 write on the error stream: nothing on success, else the message. */
export function statusText(outcome: Outcome): string {
  if (outcome.kind === "exited" && outcome.code === 0) return "";
  if (outcome.kind === "exited") return `command terminated with non-zero exit code: exit code ${outcome.code}`;
  return `error executing command in container: ${messageOf(outcome.error)}`;
}
