import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { QemuHypervisor } from "../../../src/hypervisor/qemu.js";
import { virtiofsdArgs } from "../../../src/hypervisor/virtiofsd.js";

const isKind = (kind: string) => (err: unknown) => err instanceof VmpodError && err.kind === kind;

describe("QemuHypervisor before and around a failed prepare", () => {
  it("stops, cleans up (twice) and refuses wait and devices when nothing was prepared", async () => {
    const hv = new QemuHypervisor();
    await hv.stop();
    await hv.cleanup();
    await hv.cleanup();
    await assert.rejects(hv.wait(), isKind("FailedPrecondition"));
    await assert.rejects(hv.start(), isKind("FailedPrecondition"));
    await assert.rejects(hv.addDevice({ kind: "virtio-fs", id: "d", tag: "t", sourceDir: "/s" }), isKind("FailedPrecondition"));
    await assert.rejects(hv.addDevice({ kind: "block", id: "d", path: "/layer.erofs", readonly: true }), isKind("FailedPrecondition"));
    await assert.rejects(hv.removeDevice("d"), isKind("FailedPrecondition"));
    assert.equal(await hv.consoleTail(), "");
    assert.equal(await hv.exitError(), undefined);
  });

  it("refuses an invalid spec before touching anything", async () => {
    const hv = new QemuHypervisor();
    const spec = {
      id: "bad id",
      qemuPath: "/usr/bin/qemu-system-x86_64",
      runDir: "/nonexistent/vmpod/bad",
      machine: "microvm",
      accel: "tcg",
      vcpus: 1,
      memoryMiB: 128,
      qmpSocket: "/nonexistent/vmpod/bad/qmp.sock",
      consoleLog: "/nonexistent/vmpod/bad/console.log",
    } as const;
    await assert.rejects(hv.prepare(spec), isKind("InvalidArgument"));
    await hv.cleanup();
  });
});

describe("virtiofsd command line", () => {
  it("names the socket, the shared tree, the cache mode, the sandbox and the thread pool", () => {
    // prettier-ignore
    assert.deepEqual(
      virtiofsdArgs({ daemonPath: "/usr/lib/qemu/virtiofsd", socketPath: "/run/vm/vfsd-fs0.sock", sourceDir: "/run/share", cache: "auto", threadPoolSize: 1 }),
      [
        "--socket-path=/run/vm/vfsd-fs0.sock",
        "-o", "source=/run/share",
        "-o", "cache=auto",
        "-o", "sandbox=namespace",
        "-o", "announce_submounts",
        "--thread-pool-size=1",
      ],
    );
  });
});
