import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { vmPaths, type VmSpec } from "../../../src/hypervisor/spec.js";
import { sandboxPaths, type SandboxPaths } from "../../../src/sandbox/layout.js";
import { loadVmRecord, saveVmRecord } from "../../../src/sandbox/vm-record.js";

const kind = (k: string, pattern: RegExp) => (err: unknown) => err instanceof VmpodError && err.kind === k && pattern.test(err.message);

describe("the record of a pod's VM", () => {
  let root: string;
  let paths: SandboxPaths;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-record-"));
    paths = sandboxPaths(root, "a".repeat(64));
    await mkdir(paths.root, { recursive: true });
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  const spec = (): VmSpec => {
    const p = vmPaths(paths.vmDir);
    return { id: "a".repeat(32), qemuPath: "/usr/bin/qemu-system-x86_64", runDir: paths.vmDir, machine: "microvm", accel: "tcg", vcpus: 1, memoryMiB: 256, qmpSocket: p.qmpSocket, consoleLog: p.consoleLog };
  };

  it("reads back what was saved", async () => {
    const record = { spec: spec(), handle: { qemu: { pid: 42, startTime: "123" }, virtiofsd: { pid: 43, startTime: "124" } } };
    await saveVmRecord(paths, record);
    assert.deepEqual(await loadVmRecord(paths), record);
  });

  it("is NotFound when the VM never got one", async () => {
    await assert.rejects(loadVmRecord(paths), kind("NotFound", /no vm record/));
  });

  it("refuses a record that is not JSON, of another version, or without processes", async () => {
    const file = join(paths.root, "vm.json");
    await writeFile(file, "{ half");
    await assert.rejects(loadVmRecord(paths), kind("InvalidArgument", /not JSON/));
    await writeFile(file, JSON.stringify({ version: 99, spec: spec(), handle: { qemu: { pid: 1, startTime: "1" } } }));
    await assert.rejects(loadVmRecord(paths), kind("InvalidArgument", /version 99/));
    await writeFile(file, JSON.stringify({ version: 1, spec: spec(), handle: { qemu: { pid: -1, startTime: "1" } } }));
    await assert.rejects(loadVmRecord(paths), kind("InvalidArgument", /no process handle/));
    await writeFile(file, JSON.stringify({ version: 1, handle: { qemu: { pid: 1, startTime: "1" } } }));
    await assert.rejects(loadVmRecord(paths), kind("InvalidArgument", /no spec/));
  });
});
