/** Asserting that a promise fails with a VmpodError of a given kind and message. */
import assert from "node:assert/strict";
import { VmpodError, type ErrorKind } from "../../../../src/common/errors.js";

export async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, message: RegExp): Promise<VmpodError> {
  let caught: unknown;
  await promise.then(
    () => assert.fail(`expected a ${kind} error`),
    (err: unknown) => (caught = err),
  );
  assert.ok(caught instanceof VmpodError, `expected a VmpodError, got ${String(caught)}`);
  assert.equal(caught.kind, kind, caught.message);
  assert.match(caught.message, message);
  return caught;
}
