import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { chooseAccel, hostTscKhz, type AccelProbePaths } from "../../../src/hypervisor/accel.js";

describe("acceleration choice", () => {
  let root: string;
  let paths: AccelProbePaths;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-accel-"));
    paths = { devKvm: join(root, "dev/kvm"), kvmPvmModule: join(root, "sys/module/kvm_pvm") };
    await mkdir(join(root, "dev"));
    await mkdir(join(root, "sys/module"), { recursive: true });
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const realKvm = () => writeFile(paths.devKvm, "");
  const pvm = () => mkdir(paths.kvmPvmModule);

  it("auto uses tcg when there is no KVM device", async () => {
    const choice = await chooseAccel("auto", paths);
    assert.equal(choice.accel, "tcg");
    assert.equal(choice.reason, `${paths.devKvm} does not exist: using tcg`);
  });

  it("auto uses tcg when the KVM device comes from kvm_pvm", async () => {
    await realKvm();
    await pvm();
    const choice = await chooseAccel("auto", paths);
    assert.equal(choice.accel, "tcg");
    assert.equal(choice.reason, `kvm_pvm provides ${paths.devKvm} (nested, shadow paging): using tcg`);
  });

  it("auto uses kvm when the KVM device opens and is not kvm_pvm's", async () => {
    await realKvm();
    assert.deepEqual(await chooseAccel("auto", paths), { accel: "kvm", reason: `${paths.devKvm} is usable: using kvm` });
  });

  it("auto uses tcg when the KVM device cannot be opened read-write", async () => {
    await mkdir(paths.devKvm); // a directory never opens read-write, even for root
    const choice = await chooseAccel("auto", paths);
    assert.equal(choice.accel, "tcg");
    assert.match(choice.reason, /cannot be opened read-write .*: using tcg$/);
  });

  it("tcg is taken as configured, whatever the host has", async () => {
    await realKvm();
    assert.deepEqual(await chooseAccel("tcg", paths), { accel: "tcg", reason: "tcg requested by configuration" });
  });

  it("kvm demands a usable device, and warns about kvm_pvm", async () => {
    await assert.rejects(
      chooseAccel("kvm", paths),
      (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && err.message.includes("does not exist"),
    );
    await realKvm();
    assert.deepEqual(await chooseAccel("kvm", paths), { accel: "kvm", reason: "kvm requested by configuration" });
    await pvm();
    const choice = await chooseAccel("kvm", paths);
    assert.equal(choice.accel, "kvm");
    assert.match(choice.reason, /warning: kvm_pvm provides/);
  });
});

describe("host TSC frequency", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-tsc-"));
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const cpuinfo = (mhz: string, flags: string) =>
    [0, 1].map((n) => `processor\t: ${n}\nmodel name\t: AMD EPYC\ncpu MHz\t\t: ${mhz}\nflags\t\t: fpu ${flags} sse2\n`).join("\n");

  it("reads cpu MHz when the TSC is constant", async () => {
    const path = join(root, "cpuinfo");
    await writeFile(path, cpuinfo("2596.136", "tsc constant_tsc nonstop_tsc"));
    assert.equal(await hostTscKhz(path), 2596136);
  });

  it("knows nothing when the TSC is not constant, the field is missing or the file is absent", async () => {
    const path = join(root, "cpuinfo");
    await writeFile(path, cpuinfo("2596.136", "tsc"));
    assert.equal(await hostTscKhz(path), undefined);
    await writeFile(path, "processor\t: 0\nflags\t\t: constant_tsc\n");
    assert.equal(await hostTscKhz(path), undefined);
    assert.equal(await hostTscKhz(join(root, "absent")), undefined);
  });
});
