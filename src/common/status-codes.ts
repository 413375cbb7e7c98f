/**
 * gRPC's status codes, as both ttRPC (the agent channel) and gRPC (the CRI)
 * carry them, and their one mapping to and from vmpod's error kinds.
 */
import type { ErrorKind } from "./errors.js";

export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

const BY_KIND: Record<ErrorKind, number> = {
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

export function codeOfKind(kind: ErrorKind): number {
  return BY_KIND[kind];
}

export function kindOfCode(code: number): ErrorKind {
  switch (code) {
    case Code.NOT_FOUND:
      return "NotFound";
    case Code.ALREADY_EXISTS:
      return "AlreadyExists";
    case Code.INVALID_ARGUMENT:
    case Code.OUT_OF_RANGE:
      return "InvalidArgument";
    case Code.FAILED_PRECONDITION:
    case Code.PERMISSION_DENIED:
    case Code.ABORTED:
      return "FailedPrecondition";
    case Code.RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case Code.UNAVAILABLE:
      return "Unavailable";
    case Code.DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case Code.CANCELLED:
      return "Canceled";
    case Code.UNIMPLEMENTED:
      return "Unimplemented";
    default:
      return "Internal";
  }
}
