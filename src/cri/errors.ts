/**
 * The one mapping from vmpod's errors to gRPC status codes, at the CRI
 * edge. The kind is found by walking causes (kindOf); an error of no known
 * kind is INTERNAL, never UNKNOWN. The message is kept as the status
 * details.
 */
import { status as Code } from "@grpc/grpc-js";
import { kindOf, messageOf, type ErrorKind } from "../common/errors.js";

export interface GrpcStatus {
  readonly code: Code;
  readonly details: string;
}

const CODES: Readonly<Record<ErrorKind, Code>> = {
  NotFound: Code.NOT_FOUND,
  AlreadyExists: Code.ALREADY_EXISTS,
  InvalidArgument: Code.INVALID_ARGUMENT,
  FailedPrecondition: Code.FAILED_PRECONDITION,
  ResourceExhausted: Code.RESOURCE_EXHAUSTED,
  Unavailable: Code.UNAVAILABLE,
  DeadlineExceeded: Code.DEADLINE_EXCEEDED,
  Canceled: Code.CANCELLED,
  Unimplemented: Code.UNIMPLEMENTED,
  Internal: Code.INTERNAL,
};

export function toGrpcStatus(err: unknown): GrpcStatus {
  const kind = kindOf(err);
  return { code: kind === undefined ? Code.INTERNAL : CODES[kind], details: messageOf(err) };
}

/** "NOT_FOUND" for Code.NOT_FOUND, for logs. */
export function codeName(code: Code): string {
  return Code[code] ?? String(code);
}
