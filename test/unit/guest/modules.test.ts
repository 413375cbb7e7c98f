import assert from "node:assert/strict";
import {
  GUEST_MODULES,
  hardDependencies,
  moduleName,
  orderModules,
  parseModulesBuiltin,
  parseModulesDep,
  parseShowDepends,
  type DependsLine,
  type ModuleStage,
} from "../../../guest/build/modules.js";

const K = "/lib/modules/6.1.0-56-cloud-amd64/kernel";

// `modprobe -S 6.1.0-56-cloud-amd64 --show-depends` on Debian 12's cloud kernel.
const SHOW_DEPENDS: Record<string, string> = {
  virtio_blk: `insmod ${K}/drivers/virtio/virtio_ring.ko \ninsmod ${K}/drivers/virtio/virtio.ko \ninsmod ${K}/drivers/block/virtio_blk.ko \n`,
  erofs: `insmod ${K}/arch/x86/crypto/crc32c-intel.ko \ninsmod ${K}/lib/libcrc32c.ko \ninsmod ${K}/fs/erofs/erofs.ko \n`,
  virtio_console: `insmod ${K}/drivers/virtio/virtio_ring.ko \ninsmod ${K}/drivers/virtio/virtio.ko \ninsmod ${K}/drivers/char/virtio_console.ko \n`,
  virtio_net: `insmod ${K}/drivers/virtio/virtio_ring.ko \ninsmod ${K}/drivers/virtio/virtio.ko \ninsmod ${K}/net/core/failover.ko \ninsmod ${K}/drivers/net/net_failover.ko \ninsmod ${K}/drivers/net/virtio_net.ko \n`,
  crc32c_generic: "builtin crc32c_generic\n",
};

const MODULES_DEP = [
  "kernel/drivers/virtio/virtio_ring.ko:",
  "kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko",
  "kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
  "kernel/arch/x86/crypto/crc32c-intel.ko:",
  "kernel/lib/libcrc32c.ko:",
  "kernel/fs/erofs/erofs.ko: kernel/lib/libcrc32c.ko",
  "kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
  "kernel/net/core/failover.ko:",
  "kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko",
  "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
  "",
].join("\n");

function depends(names: readonly string[]): Map<string, DependsLine[]> {
  return new Map(names.map((n) => [n, parseShowDepends(SHOW_DEPENDS[n] ?? "")]));
}

describe("guest modules", () => {
  it("names modules as the kernel does", () => {
    assert.equal(moduleName("/x/crc32c-intel.ko"), "crc32c_intel");
    assert.equal(moduleName("virtio_blk.ko.xz"), "virtio_blk");
    assert.equal(moduleName("vmw_vsock_virtio_transport"), "vmw_vsock_virtio_transport");
  });

  it("parses insmod and builtin lines and rejects anything else", () => {
    assert.deepEqual(parseShowDepends(`insmod ${K}/lib/libcrc32c.ko \nbuiltin crc32c_generic\n`), [
      { kind: "insmod", path: `${K}/lib/libcrc32c.ko` },
      { kind: "builtin", name: "crc32c_generic" },
    ]);
    assert.throws(() => parseShowDepends("install /bin/true\n"), /unexpected modprobe/);
  });

  it("reads modules.dep and follows dependencies transitively", () => {
    const deps = parseModulesDep(MODULES_DEP);
    assert.deepEqual(deps.get("erofs"), ["libcrc32c"]);
    assert.deepEqual([...hardDependencies("virtio_net", deps)].sort(), ["failover", "net_failover", "virtio", "virtio_net", "virtio_ring"]);
  });

  it("orders by stage, dependencies first, each module once, without soft dependencies", () => {
    const stages: Record<ModuleStage, string[]> = { boot: ["virtio_blk", "erofs"], agent: ["virtio_console"], later: ["virtio_net"] };
    const files = orderModules(stages, depends(["virtio_blk", "erofs", "virtio_console", "virtio_net"]), new Set(), parseModulesDep(MODULES_DEP));
    assert.deepEqual(
      files.map((f) => `${f.stage}:${f.name}`),
      ["boot:virtio_ring", "boot:virtio", "boot:virtio_blk", "boot:libcrc32c", "boot:erofs", "agent:virtio_console", "later:failover", "later:net_failover", "later:virtio_net"],
    );
    assert.equal(files[0]?.path, `${K}/drivers/virtio/virtio_ring.ko`);
  });

  it("leaves out modules built into the kernel", () => {
    const builtin = parseModulesBuiltin("kernel/crypto/crc32c_generic.ko\nkernel/drivers/virtio/virtio_ring.ko\n");
    const stages: Record<ModuleStage, string[]> = { boot: ["virtio_blk", "crc32c_generic"], agent: [], later: [] };
    const files = orderModules(stages, depends(["virtio_blk", "crc32c_generic"]), builtin, parseModulesDep(MODULES_DEP));
    assert.deepEqual(
      files.map((f) => f.name),
      ["virtio", "virtio_blk"],
    );
  });

  it("fails when a requested module has no dependency information", () => {
    const stages: Record<ModuleStage, string[]> = { boot: ["nope"], agent: [], later: [] };
    assert.throws(() => orderModules(stages, new Map(), new Set(), new Map()), /no dependency information for module nope/);
  });

  it("asks for every module the guest needs, the root's path first", () => {
    const all = [...GUEST_MODULES.boot, ...GUEST_MODULES.agent, ...GUEST_MODULES.later];
    for (const name of ["virtio_mmio", "virtio_pci", "virtio_blk", "erofs", "virtio_console", "virtio_net", "vmw_vsock_virtio_transport", "virtiofs", "overlay", "fuse", "libcrc32c", "virtio_scsi", "sd_mod"]) {
      assert.ok(all.includes(name), name);
    }
    assert.deepEqual(GUEST_MODULES.agent, ["virtio_console"]);
    assert.ok(!GUEST_MODULES.boot.includes("virtio_net"), "the network is not on the boot path");
  });
});
