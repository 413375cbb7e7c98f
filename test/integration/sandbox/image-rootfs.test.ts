/**
 * Containers in a pod VM from a pulled image: the image comes from a real
 * registry through the image service, its layers reach the guest (an
 * overlay built on the host and shared over virtio-fs, or erofs disks with
 * the overlay made in the guest), and each container sees the image's files
 * and only its own writes. Nothing is left afterwards.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { silentLogger } from "../../../src/common/log.js";
import type { OciProcess, OciSpec } from "../../../src/common/oci-spec.js";
import type { Config } from "../../../src/config/types.js";
import { openImageService, type OpenedImageService } from "../../../src/image/index.js";
import type { ImageRecord } from "../../../src/image/types.js";
import type { PodVm } from "../../../src/sandbox/pod-vm.js";
import { readAll } from "../../../src/sandbox/process-io.js";
import { assertNothingLeft } from "../../helpers/leaks.js";
import { pushMultiLayer, type PushedImage } from "../../helpers/registry/images.js";
import { startRegistry, type RunningRegistry } from "../../helpers/registry/server.js";
import { vmFixture, type VmFixture } from "../../helpers/vm-fixture.js";

function spec(args: string[]): OciSpec {
  const process: OciProcess = { args, env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } };
  return {
    ociVersion: "1.1.0",
    process,
    hostname: "c",
    mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
    linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }], cgroupsPath: "" },
  };
}

const MODES: { name: string; configure: (c: Config) => Config }[] = [
  { name: "virtio-fs (overlay on the host)", configure: (c) => ({ ...c, hypervisor: { ...c.hypervisor, disableBlockDeviceUse: true } }) },
  { name: "erofs layers on virtio-scsi (overlay in the guest)", configure: (c) => ({ ...c, hypervisor: { ...c.hypervisor, disableBlockDeviceUse: false } }) },
];

describe("containers from a pulled image in a pod VM (real QEMU, real registry)", function () {
  this.timeout(600_000);
  let registry: RunningRegistry;
  let image: PushedImage;

  before(async () => {
    registry = await startRegistry();
    image = await pushMultiLayer(registry, { repository: "vm/layered", tag: "1" });
  });
  after(async () => {
    await registry?.stop();
  });

  for (const mode of MODES) {
    describe(mode.name, () => {
      let fx: VmFixture;
      let images: OpenedImageService;
      let record: ImageRecord;
      let vm: PodVm | undefined;

      before(async () => {
        fx = await vmFixture({ configure: mode.configure });
        images = await openImageService({ ...fx.config.image, root: join(fx.root, "images") }, silentLogger);
        record = await images.service.pull(image.reference);
      });
      after(async () => {
        await vm?.stop();
        await images?.close();
        await fx?.dispose();
      });
      afterEach(async function () {
        if (this.currentTest?.state === "failed") await fx.keepConsoles(this.currentTest.fullTitle());
      });

      const run = async (cid: string, script: string): Promise<{ out: string; code: number }> => {
        assert.ok(vm);
        const io = await vm.exec(cid, `e${Math.random().toString(16).slice(2, 10)}`, { args: ["sh", "-c", script], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } });
        const [out, code] = await Promise.all([readAll(io.stdout), io.wait()]);
        return { out, code };
      };

      it("a container sees the image's merged files and its own writes; a second container does not see them", async () => {
        vm = await fx.boot("imgpod");
        for (const cid of ["c1", "c2"]) {
          const rootfs = await images.service.use(record.id, cid, { blockImages: vm.takesLayerDisks });
          await vm.createContainer(cid, { kind: "layers", layers: rootfs }, spec(["sleep", "1000"]));
          await vm.startContainer(cid);
        }
        const seen = await run("c1", "cat /etc/motd; ls /data; ls /data/dir; test -e /data/a && echo a-visible; echo written > /data/new; echo more >> /etc/motd; rm /data/b; sync; cat /data/new");
        assert.equal(seen.code, 0, seen.out);
        const lines = seen.out.trim().split("\n");
        assert.ok(!lines.includes("a-visible"), `the whiteout hides /data/a: ${seen.out}`);
        assert.ok(lines.includes("y") && !lines.includes("x"), `the opaque /data/dir shows only the top layer's entries: ${seen.out}`);
        assert.equal(lines.at(-1), "written");
        for (const path of image.absent) assert.equal((await run("c1", `test -e ${path}`)).code, 1, `${path} is hidden`);

        const other = await run("c2", "test -e /data/new && echo leaked; test -e /data/b && echo b-present; cat /etc/motd");
        assert.ok(!other.out.includes("leaked"), "c1's new file is not in c2");
        assert.ok(other.out.includes("b-present"), "c1's removal is not in c2");
        assert.ok(!other.out.includes("more"), "c1's append is not in c2");

        const again = await run("c1", "cat /data/new");
        assert.equal(again.out.trim(), "written", "c1 keeps its own write");

        for (const cid of ["c1", "c2"]) {
          await vm.removeContainer(cid, 1);
          await images.service.release(cid);
        }
        // The image's own layers are untouched by the containers' writes.
        const fresh = await images.service.use(record.id, "c3", { blockImages: vm.takesLayerDisks });
        await vm.createContainer("c3", { kind: "layers", layers: fresh }, spec(["sleep", "1000"]));
        await vm.startContainer("c3");
        const clean = await run("c3", "test -e /data/new && echo leaked; test -e /data/b && echo b-present");
        assert.ok(!clean.out.includes("leaked") && clean.out.includes("b-present"), clean.out);
        await vm.removeContainer("c3", 1);
        await images.service.release("c3");
        await vm.stop();
        vm = undefined;
        await fx.release(false, "");
        await assertNothingLeft(join(fx.root, "sandboxes"));
      });
    });
  }
});
