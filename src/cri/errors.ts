/**
 * The one mapping from vmpod's errors to gRPC status codes, at the CRI
 * edge. The kind is found by walking causes (kindOf); an error of no known
 * kind is INTERNAL, never UNKNOWN. The message is kept as the status
 * details.
 */
import { status as Code } from "@grpc/grpc-js";
import { kindOf, messageOf } from "../common/errors.js";
import { codeOfKind } from "../common/status-codes.js";

export interface GrpcStatus {
  readonly code: Code;
  readonly details: string;
}

export function toGrpcStatus(err: unknown): GrpcStatus {
  const kind = kindOf(err);
  // grpc-js's codes are gRPC's numbers, the same as the shared table's.
  return { code: kind === undefined ? Code.INTERNAL : (codeOfKind(kind) as Code), details: messageOf(err) };
}

/** "NOT_FOUND" for Code.NOT_FOUND, for logs. */
export function codeName(code: Code): string {
  return Code[code] ?? String(code);
}
