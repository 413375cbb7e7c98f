import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { combineDigests, digestData, hashInputs } from "../../../guest/build/hash.js";
import { hashInputsOf, type GuestSources } from "../../../guest/build/inputs.js";

const d = (s: string) => digestData(s);

function sources(over: Partial<GuestSources> = {}): GuestSources {
  return {
    repoRoot: "/repo",
    kernel: { path: "/boot/vmlinuz-6.1.0-56-cloud-amd64", version: "6.1.0-56-cloud-amd64" },
    modules: [{ name: "virtio_blk", path: "/lib/modules/v/virtio_blk.ko", stage: "boot" }],
    busybox: { path: "/bin/busybox", applets: ["bin/sh"] },
    node: { path: "/usr/bin/node", version: "v20.20.2" },
    crun: { path: "/usr/bin/crun", version: "1.8.1" },
    libraries: ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"],
    koffi: { packageDir: "/repo/node_modules/koffi", version: "2.16.3", files: ["index.js", "package.json"] },
    agent: { code: "bundle", inputs: ["/repo/guest/agent/main.ts", "/repo/src/common/errors.ts"], warnings: [], workingDir: "/repo", entry: "/repo/guest/agent/main.ts" },
    initScripts: { initramfs: "/repo/guest/init/initramfs-init.sh", root: "/repo/guest/init/root-init.sh" },
    mkfsErofs: "/usr/bin/mkfs.erofs",
    builderFiles: ["/repo/guest/build/main.ts"],
    ...over,
  };
}

describe("guest image hash", () => {
  it("does not depend on the order of the inputs", () => {
    const a = [
      { label: "kernel", digest: d("k") },
      { label: "node", digest: d("n") },
    ];
    assert.equal(combineDigests(a), combineDigests([...a].reverse()));
  });

  it("changes with any content or label", () => {
    const base = combineDigests([{ label: "kernel", digest: d("k") }]);
    assert.notEqual(combineDigests([{ label: "kernel", digest: d("k2") }]), base);
    assert.notEqual(combineDigests([{ label: "kernel2", digest: d("k") }]), base);
    assert.notEqual(combineDigests([{ label: "kernel", digest: d("k") }, { label: "x", digest: d("") }]), base);
  });

  it("refuses a label given twice", () => {
    assert.throws(() => combineDigests([{ label: "a", digest: d("1") }, { label: "a", digest: d("2") }]), /given twice/);
  });

  it("hashes files by content", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmpod-hash-"));
    try {
      await writeFile(join(dir, "f"), "one");
      const first = await hashInputs([{ label: "f", path: join(dir, "f") }]);
      assert.equal(first.hash, (await hashInputs([{ label: "f", data: "one" }])).hash);
      await writeFile(join(dir, "f"), "two");
      assert.notEqual((await hashInputs([{ label: "f", path: join(dir, "f") }])).hash, first.hash);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("covers every part of the image, each under its own label", () => {
    const labels = hashInputsOf(sources(), { rootCompression: "none" }).map((i) => i.label);
    assert.equal(new Set(labels).size, labels.length);
    for (const label of [
      "kernel",
      "busybox",
      "node",
      "crun",
      "mkfs.erofs",
      "agent-bundle",
      "init:initramfs",
      "init:root",
      "module:boot:virtio_blk",
      "library:/lib/x86_64-linux-gnu/libc.so.6",
      "library:/lib64/ld-linux-x86-64.so.2",
      "koffi:index.js",
      "agent-source:guest/agent/main.ts",
      "agent-source:src/common/errors.ts",
      "builder:guest/build/main.ts",
      "setting:rootCompression",
    ]) {
      assert.ok(labels.includes(label), label);
    }
  });

  it("moves a module to another stage into another label", () => {
    const moved = hashInputsOf(sources({ modules: [{ name: "virtio_blk", path: "/lib/modules/v/virtio_blk.ko", stage: "later" }] }), {});
    assert.ok(moved.some((i) => i.label === "module:later:virtio_blk"));
  });
});
