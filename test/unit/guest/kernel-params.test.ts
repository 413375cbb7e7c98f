import assert from "node:assert/strict";
import {
  BASE_KERNEL_PARAMS,
  DEBUG_PARAM,
  FLOOR_PARAM,
  guestKernelParams,
  parseCpuinfoTscKhz,
} from "../../../guest/build/kernel-params.js";

const CPUINFO = `processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC
cpu MHz\t\t: 2596.136
flags\t\t: fpu vme de pse tsc msr pae constant_tsc rep_good nonstop_tsc tsc_known_freq

processor\t: 1
cpu MHz\t\t: 2596.136
flags\t\t: fpu tsc constant_tsc
`;

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

  it("reads the TSC frequency from /proc/cpuinfo when the TSC is constant", () => {
    assert.equal(parseCpuinfoTscKhz(CPUINFO), 2596136);
    assert.equal(parseCpuinfoTscKhz(CPUINFO.replace(/ constant_tsc/g, "")), undefined);
    assert.equal(parseCpuinfoTscKhz("processor\t: 0\nflags\t: tsc constant_tsc\n"), undefined);
  });
});
