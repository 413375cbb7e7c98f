/**
 * A restore from a VM template under real QEMU whose devices fail while the
 * agent is being reached (the two go on at once): the half-made pod is
 * undone (its VM, the virtiofsd of the share already added, its directory),
 * the pod boots cold instead and runs a container, the template is kept,
 * and nothing is left behind.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import type { CallOptions, HotplugDevice, AttachedDevice } from "../../../src/hypervisor/hypervisor.js";
import { QemuHypervisor } from "../../../src/hypervisor/qemu.js";
import { VmEngine } from "../../../src/sandbox/engine.js";
import { readAll } from "../../../src/sandbox/process-io.js";
import { RESTORED_SHARE_ID } from "../../../src/sandbox/template-restore.js";
import { makeBusyboxRootfs } from "../../helpers/busybox-rootfs.js";
import { assertNothingLeft, processesMentioning } from "../../helpers/leaks.js";
import { vmFixture, type VmFixture } from "../../helpers/vm-fixture.js";

/** QEMU whose share is added, then reported failed (as a QMP error after the daemon started would be). */
class ShareFailsAfterAdding extends QemuHypervisor {
  added = false;

  override async addDevice(device: HotplugDevice, options?: CallOptions): Promise<AttachedDevice> {
    const attached = await super.addDevice(device, options);
    if (device.kind !== "virtio-fs") return attached;
    this.added = true;
    throw new VmpodError("Internal", "test: the share fails once added");
  }
}

describe("VM template restore, failing (real QEMU)", function () {
  this.timeout(900_000);
  let fx: VmFixture;
  let rootfsDir: string;

  before(async function () {
    fx = await vmFixture({ configure: (c) => ({ ...c, hypervisor: { ...c.hypervisor, machineType: "q35" }, factory: { ...c.factory, enableTemplate: true } }) });
    rootfsDir = await mkdtemp(join(tmpdir(), "vmpod-rootfs-"));
    await makeBusyboxRootfs(rootfsDir);
  });

  afterEach(async function () {
    await fx.release(this.currentTest?.state === "failed", this.currentTest?.fullTitle() ?? "");
  });

  after(async () => {
    await fx?.dispose();
    if (rootfsDir) await rm(rootfsDir, { recursive: true, force: true });
    if (fx) await assertNothingLeft(fx.root);
  });

  it("undoes a restore whose share fails while the agent is reached, and boots the pod cold, keeping the template", async () => {
    assert.equal(await fx.engine.warmUp(), true, "the default shape's template is built");
    const made: ShareFailsAfterAdding[] = [];
    const engine = new VmEngine(fx.config, fx.host, () => {
      const hv = new ShareFailsAfterAdding();
      made.push(hv);
      return hv;
    }, fx.logger);
    const vm = await engine.boot({ id: "tpl-fail", hostname: "pod-f" });
    try {
      assert.equal(made.length, 2, "a restore, then a cold boot");
      assert.equal(made[0]?.added, true, "the restore's share was added before it failed");
      assert.match(await readFile(vm.consoleLog, "utf8"), /SeaBIOS/, "the pod booted cold");
      // Of the pod, only the cold-booted VM's QEMU and its boot share's virtiofsd run: not the restored share's daemon.
      const running = await processesMentioning(vm.paths.vmDir);
      assert.equal(running.filter((p) => p.includes("qemu-system")).length, 1, `processes of the pod: ${running.join("\n")}`);
      assert.deepEqual(running.filter((p) => p.includes(RESTORED_SHARE_ID)), []);
      await vm.createContainer("c", { kind: "dir", path: rootfsDir }, {
        ociVersion: "1.1.0",
        process: { args: ["hostname"], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
        linux: { namespaces: [{ type: "mount" }], cgroupsPath: "" },
      });
      const io = vm.io("c", "");
      await vm.startContainer("c");
      const [out, status] = await Promise.all([readAll(io.stdout), io.wait()]);
      assert.equal(status, 0);
      assert.equal(out.trim(), "pod-f");
    } finally {
      await vm.stop();
    }
    const { spec } = fx.engine.templateVmFor({ id: "tpl-after" });
    assert.ok(await fx.engine.templates?.get(spec), "the template is kept: the failure was this pod's, not the template's");
    assert.deepEqual(await processesMentioning(vm.paths.vmDir), []);
  });
});
