import assert from "node:assert/strict";
import {
  BASE_KERNEL_PARAMS,
  DEBUG_PARAM,
  FLOOR_PARAM,
  guestKernelParams,
} from "../../../guest/build/kernel-params.js";


describe("guest kernel params", () => {
  it("has the console, the reboot method and nothing pod-specific", () => {
    for (const p of ["console=ttyS0", "quiet", "panic=-1", "reboot=t", "cryptomgr.notests"]) assert.ok(BASE_KERNEL_PARAMS.includes(p), p);
    assert.ok(!BASE_KERNEL_PARAMS.some((p) => /^(root|ip|hostname|vmpod\.)/.test(p)));
  });

  it("is the base alone by default", () => {
    assert.deepEqual(guestKernelParams(), [...BASE_KERNEL_PARAMS]);
  });

  it("adds the TSC frequency, floor and debug switches, then extras", () => {
    assert.deepEqual(guestKernelParams({ tscKhz: 2596136, floor: true, debug: true, extra: ["loglevel=7"] }).slice(BASE_KERNEL_PARAMS.length), [
      "tsc_early_khz=2596136",
      FLOOR_PARAM,
      DEBUG_PARAM,
      "loglevel=7",
    ]);
    assert.throws(() => guestKernelParams({ tscKhz: 0 }), RangeError);
    assert.throws(() => guestKernelParams({ tscKhz: 1.5 }), RangeError);
  });
});
