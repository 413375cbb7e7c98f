import assert from "node:assert/strict";
import { initramfsConfig } from "../../../guest/build/initramfs.js";
import { pickKernel } from "../../../guest/build/inputs.js";
import { koffiRequires } from "../../../guest/build/koffi.js";
import type { ModuleFile } from "../../../guest/build/modules.js";
import { appletLinks, imagePath, rootInitConfig, uuidFromHash } from "../../../guest/build/rootfs.js";

const MODULES: ModuleFile[] = [
  { name: "virtio_ring", path: "/k/virtio_ring.ko", stage: "boot" },
  { name: "virtio_blk", path: "/k/virtio_blk.ko", stage: "boot" },
  { name: "virtio_console", path: "/k/virtio_console.ko", stage: "agent" },
  { name: "overlay", path: "/k/overlay.ko", stage: "later" },
];

describe("guest image layout", () => {
  it("places host files in the merged-/usr layout", () => {
    assert.equal(imagePath("/lib/x86_64-linux-gnu/libc.so.6"), "usr/lib/x86_64-linux-gnu/libc.so.6");
    assert.equal(imagePath("/lib64/ld-linux-x86-64.so.2"), "usr/lib64/ld-linux-x86-64.so.2");
    assert.equal(imagePath("/usr/lib/x86_64-linux-gnu/libz.so.1"), "usr/lib/x86_64-linux-gnu/libz.so.1");
    assert.equal(imagePath("bin/sh"), "usr/bin/sh");
    assert.equal(imagePath("/sbin//ip"), "usr/sbin/ip");
  });

  it("links busybox applets, but not init and not over real programs", () => {
    const links = appletLinks(["bin/sh", "sbin/init", "usr/bin/node", "bin/ls", "usr/bin/ls", "sbin/ip"], new Set(["usr/bin/node"]));
    assert.deepEqual(links, ["usr/bin/sh", "usr/bin/ls", "usr/sbin/ip"]);
  });

  it("splits the modules between the initramfs and the root image's init", () => {
    assert.equal(initramfsConfig(MODULES), '# Written by the vmpod guest build.\nMODULES_BOOT="virtio_ring.ko virtio_blk.ko"\n');
    const conf = rootInitConfig({ kernel: { path: "/boot/vmlinuz-6.1.0-56-cloud-amd64", version: "6.1.0-56-cloud-amd64" }, modules: MODULES });
    assert.match(conf, /^KERNEL_VERSION="6\.1\.0-56-cloud-amd64"$/m);
    assert.match(conf, /^MODULES_AGENT="virtio_console\.ko"$/m);
    assert.match(conf, /^MODULES_LATER="overlay\.ko"$/m);
  });

  it("starts the agent's node with V8's interpreter only, no WebAssembly warning", () => {
    const conf = rootInitConfig({ kernel: { path: "/boot/vmlinuz-6.1.0-56-cloud-amd64", version: "6.1.0-56-cloud-amd64" }, modules: MODULES });
    assert.match(conf, /^NODE_FLAGS="--jitless --no-expose-wasm"$/m);
  });

  it("makes a fixed UUID from the image hash", () => {
    assert.equal(uuidFromHash("0123456789abcdef0123456789abcdefffff"), "01234567-89ab-cdef-0123-456789abcdef");
  });

  it("picks the newest cloud kernel", () => {
    assert.deepEqual(pickKernel(["vmlinuz-6.1.0-9-cloud-amd64", "vmlinuz-6.1.0-56-cloud-amd64", "vmlinuz-6.1.0-60-amd64", "config-6.1.0-56-cloud-amd64"]), {
      file: "vmlinuz-6.1.0-56-cloud-amd64",
      version: "6.1.0-56-cloud-amd64",
    });
    assert.equal(pickKernel(["vmlinuz-6.1.0-60-amd64"]), undefined);
  });

  it("copies what koffi's index requires, native module for linux_x64 only", () => {
    const index = `
      var x = require("./lib/helper.js");
      native = require("./build/koffi/darwin_x64/koffi.node");
      native = require("./build/koffi/linux_x64/koffi.node");
      native = require("./build/koffi/musl_x64/koffi.node");
      var fs = require("fs");`;
    assert.deepEqual(koffiRequires(index), ["build/koffi/linux_x64/koffi.node", "lib/helper.js"]);
  });
});
