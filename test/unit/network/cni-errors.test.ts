import assert from "node:assert/strict";
import { kindOfCniCode, parseCniError, pluginFailure } from "../../../src/network/cni-errors.js";

describe("CNI plugin errors", () => {
  it("reads the error object a plugin prints on stdout", () => {
    assert.deepEqual(parseCniError(JSON.stringify({ cniVersion: "1.0.0", code: 7, msg: "bad config", details: "no ipam" })), { code: 7, msg: "bad config", details: "no ipam" });
    assert.deepEqual(parseCniError(JSON.stringify({ code: 11, msg: "busy" })), { code: 11, msg: "busy" });
    assert.equal(parseCniError("panic: runtime error"), undefined);
    assert.equal(parseCniError(JSON.stringify({ msg: "no code" })), undefined);
  });

  it("gives the kind by the error code, never by the message", () => {
    assert.equal(kindOfCniCode(1), "FailedPrecondition");
    for (const code of [2, 4, 6, 7]) assert.equal(kindOfCniCode(code), "InvalidArgument");
    assert.equal(kindOfCniCode(3), "NotFound");
    for (const code of [11, 50, 51]) assert.equal(kindOfCniCode(code), "Unavailable");
    for (const code of [5, 100, 999]) assert.equal(kindOfCniCode(code), "Internal");
  });

  it("names the plugin, the command and the plugin's own message", () => {
    const e = pluginFailure("bridge", "ADD", 1, JSON.stringify({ cniVersion: "1.0.0", code: 11, msg: "failed to allocate for range 0", details: "no IP addresses available" }), "");
    assert.equal(e.kind, "Unavailable");
    assert.equal(e.message, "CNI plugin bridge ADD: failed to allocate for range 0 (no IP addresses available) [CNI error 11]");
  });

  it("falls back on the plugin's stderr when it printed no error object", () => {
    const e = pluginFailure("portmap", "DEL", 2, "", "line one\ngoroutine 1 [running]:\n");
    assert.equal(e.kind, "Internal");
    assert.equal(e.message, "CNI plugin portmap DEL: exit 2: line one; goroutine 1 [running]:");
    assert.equal(pluginFailure("x", "ADD", 3, "", "").message, "CNI plugin x ADD: exit 3");
  });
});
