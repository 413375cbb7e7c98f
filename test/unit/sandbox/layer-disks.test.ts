/**
 * Block layers per pod, over a fake hypervisor: a layer's disk is added once
 * for every container that shares it, removed with its last user, and a
 * failure part-way gives back what was taken.
 */
import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import type { AttachedDevice, Hypervisor, HotplugDevice } from "../../../src/hypervisor/hypervisor.js";
import type { Digest } from "../../../src/image/digest.js";
import type { RootfsLayers } from "../../../src/image/types.js";
import { LayerDisks } from "../../../src/sandbox/layer-disks.js";

class FakeHypervisor implements Pick<Hypervisor, "addDevice" | "removeDevice"> {
  readonly attached = new Map<string, string>();
  readonly log: string[] = [];
  failAddAt = -1;
  private lun = 0;

  async addDevice(device: HotplugDevice): Promise<AttachedDevice> {
    if (device.kind !== "block") throw new Error("block devices only");
    if (this.log.filter((l) => l.startsWith("add")).length === this.failAddAt) throw new VmpodError("Internal", "device_add failed");
    this.log.push(`add ${device.id}`);
    const source = `0:${this.lun++}`;
    this.attached.set(device.id, source);
    return { kind: "block", id: device.id, storageDriver: "scsi", source };
  }

  async removeDevice(id: string): Promise<void> {
    if (!this.attached.delete(id)) throw new VmpodError("NotFound", `no device ${id}`);
    this.log.push(`remove ${id}`);
  }
}

const digest = (c: string) => `sha256:${c.repeat(64)}` as Digest;

function layers(...chars: string[]): RootfsLayers {
  return {
    imageId: digest("f"),
    layers: chars.map((c) => ({ diffId: digest(c), dir: `/layers/${c}`, blockImage: `/layers/${c}/layer.erofs` })),
    upperDir: "/upper",
    workDir: "/work",
  };
}

describe("layer disks", () => {
  let hv: FakeHypervisor;
  let disks: LayerDisks;
  beforeEach(() => {
    hv = new FakeHypervisor();
    disks = new LayerDisks(hv as unknown as Hypervisor, silentLogger);
  });

  it("gives the agent the layers, lowest first, and an overlay with the top layer first", async () => {
    const storages = await disks.acquire("c1", layers("a", "b"), "/run/vmpod/containers/c1/rootfs");
    assert.deepEqual(storages.map((s) => s.driver), ["scsi", "scsi", "overlayfs"]);
    assert.deepEqual(storages.slice(0, 2).map((s) => s.source), ["0:0", "0:1"]);
    assert.equal(storages[0]?.mountPoint, `/run/vmpod/layers/${"a".repeat(24)}`);
    assert.deepEqual(storages[2]?.options, [`lowerdir=/run/vmpod/layers/${"b".repeat(24)}:/run/vmpod/layers/${"a".repeat(24)}`]);
    assert.equal(storages[2]?.mountPoint, "/run/vmpod/containers/c1/rootfs");
    const ro = await disks.acquire("c2", layers("a"), "/r", { readonly: true });
    assert.deepEqual(ro.at(-1)?.options?.at(-1), "ro");
  });

  it("adds a shared layer once and removes it with its last user", async () => {
    await disks.acquire("c1", layers("a", "b"), "/r1");
    await disks.acquire("c2", layers("a", "c"), "/r2");
    assert.equal(hv.log.filter((l) => l.startsWith("add")).length, 3);
    await disks.release("c1");
    assert.deepEqual([...hv.attached.keys()].sort(), [`layer-${"a".repeat(24)}`, `layer-${"c".repeat(24)}`]);
    await disks.release("c2");
    assert.equal(hv.attached.size, 0);
    await disks.release("c2"); // twice: nothing more to do
  });

  it("gives back the disks it added when a later one fails", async () => {
    await disks.acquire("c1", layers("a"), "/r1");
    hv.failAddAt = 2;
    await assert.rejects(disks.acquire("c2", layers("a", "b", "c"), "/r2"), (e: unknown) => e instanceof VmpodError && e.kind === "Internal");
    assert.deepEqual([...hv.attached.keys()], [`layer-${"a".repeat(24)}`], "c1's layer stays, c2's new one went");
    await disks.release("c1");
    assert.equal(hv.attached.size, 0);
  });

  it("refuses a layer without its erofs image", async () => {
    const noImage: RootfsLayers = { ...layers("a"), layers: [{ diffId: digest("a"), dir: "/layers/a" }] };
    await assert.rejects(disks.acquire("c1", noImage, "/r"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
    assert.equal(hv.attached.size, 0);
  });
});
