/**
 * The one mapping from errors to gRPC status codes: every kind, kinds
 * found through causes, AggregateError and SuppressedError, aborts and
 * timeouts, and anything else as INTERNAL, never UNKNOWN, message kept.
 */
import assert from "node:assert/strict";
import { status as Code } from "@grpc/grpc-js";
import { ERROR_KINDS, VmpodError, wrap } from "../../../src/common/errors.js";
import { Rollback } from "../../../src/common/rollback.js";
import { codeName, toGrpcStatus } from "../../../src/cri/errors.js";

describe("cri errors: toGrpcStatus", () => {
  it("maps every error kind to its code", () => {
    const expected: Record<string, Code> = {
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
    for (const kind of ERROR_KINDS) {
      const status = toGrpcStatus(new VmpodError(kind, `a ${kind} failure`));
      assert.equal(status.code, expected[kind], kind);
      assert.equal(status.details, `a ${kind} failure`);
    }
  });

  it("finds the kind through wrapping and causes, keeping the whole message", () => {
    const err = wrap("run pod", wrap("boot vm", new VmpodError("ResourceExhausted", "no memory for 2 GiB")));
    assert.deepEqual(toGrpcStatus(err), { code: Code.RESOURCE_EXHAUSTED, details: "run pod: boot vm: no memory for 2 GiB" });
    const plainWithCause = new Error("outer", { cause: new VmpodError("NotFound", "pod p1 not found") });
    assert.equal(toGrpcStatus(plainWithCause).code, Code.NOT_FOUND);
  });

  it("looks inside AggregateError and SuppressedError", () => {
    const aggregate = new AggregateError([new Error("plain"), new VmpodError("FailedPrecondition", "in use")], "two failures");
    assert.equal(toGrpcStatus(aggregate).code, Code.FAILED_PRECONDITION);
    const suppressed = { name: "SuppressedError", message: "cleanup failed", error: new Error("x"), suppressed: new VmpodError("Unavailable", "agent gone") };
    assert.equal(toGrpcStatus(suppressed).code, Code.UNAVAILABLE);
  });

  it("names the step's own error first when cleaning up after it failed too (await using)", async () => {
    const failing = async () => {
      await using undo = new Rollback();
      undo.push("unmount", () => {
        throw new VmpodError("Internal", "device busy");
      });
      throw new VmpodError("InvalidArgument", "sysctl foo is unknown");
    };
    const err = await failing().catch((e: unknown) => e);
    const status = toGrpcStatus(new VmpodError("InvalidArgument", "create container c1", { cause: err }));
    assert.equal(status.code, Code.INVALID_ARGUMENT);
    assert.match(status.details, /^create container c1: sysctl foo is unknown; cleaning up after it failed too: rollback: undo unmount: device busy$/);
  });

  it("maps aborts and timeouts", () => {
    assert.equal(toGrpcStatus(new DOMException("stop", "AbortError")).code, Code.CANCELLED);
    assert.equal(toGrpcStatus(new DOMException("late", "TimeoutError")).code, Code.DEADLINE_EXCEEDED);
  });

  it("makes unknown errors INTERNAL, never UNKNOWN", () => {
    for (const err of [new Error("boom"), new TypeError("x is undefined"), "a string", 42, null, undefined]) {
      const status = toGrpcStatus(err);
      assert.equal(status.code, Code.INTERNAL, String(err));
      assert.notEqual(status.code, Code.UNKNOWN);
    }
    assert.equal(toGrpcStatus(new Error("boom")).details, "boom");
  });

  it("names codes for logs", () => {
    assert.equal(codeName(Code.NOT_FOUND), "NOT_FOUND");
    assert.equal(codeName(Code.OK), "OK");
  });
});
