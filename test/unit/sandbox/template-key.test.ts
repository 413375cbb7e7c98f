import assert from "node:assert/strict";
import { mkdtemp, rm, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { defaultConfig } from "../../../src/config/defaults.js";
import { parseConfig } from "../../../src/config/load.js";
import type { Config } from "../../../src/config/types.js";
import { buildQemuArgs } from "../../../src/hypervisor/qemu-args.js";
import { vmPaths, type VmSpec } from "../../../src/hypervisor/spec.js";
import { templatesUnusable } from "../../../src/sandbox/engine.js";
import { templateKey } from "../../../src/sandbox/template-key.js";

describe("vm template key", () => {
  let dir: string;
  let spec: VmSpec;

  /** The spec of a template-shaped VM whose own files are under `runDir`. */
  function at(runDir: string, id: string): VmSpec {
    const paths = vmPaths(runDir);
    return {
      ...spec,
      id,
      runDir,
      qmpSocket: paths.qmpSocket,
      consoleLog: paths.consoleLog,
      agent: { kind: "virtio-serial", socketPath: paths.agentSocket, name: "agent.channel.0" },
    };
  }

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-key-"));
    for (const f of ["qemu", "vmlinux", "initrd", "root.erofs"]) await writeFile(join(dir, f), f);
    const paths = vmPaths(join(dir, "a"));
    spec = {
      id: "a",
      qemuPath: join(dir, "qemu"),
      runDir: join(dir, "a"),
      machine: "q35",
      accel: "tcg",
      vcpus: 1,
      memoryMiB: 256,
      boot: { kernel: join(dir, "vmlinux"), initrd: join(dir, "initrd"), params: ["console=ttyS0", "quiet"] },
      rootImage: join(dir, "root.erofs"),
      agent: { kind: "virtio-serial", socketPath: paths.agentSocket, name: "agent.channel.0" },
      qmpSocket: paths.qmpSocket,
      consoleLog: paths.consoleLog,
      sharedMemory: true,
      hotplugPorts: 2,
    };
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is the same for every pod's VM of one shape, wherever its files are and whether it boots or restores", async () => {
    const a = await templateKey(at(join(dir, "pod-a/vm"), "pod-a"));
    const b = await templateKey({ ...at(join(dir, "other/pod-b/vm"), "pod-b"), incoming: true, paused: true });
    assert.equal(a.key, b.key);
    assert.match(a.key, /^[0-9a-f]{16}$/);
  });

  it("changes with the kernel command line, memory, vCPUs, hot-plug ports and acceleration", async () => {
    const key = (await templateKey(spec)).key;
    const variants: VmSpec[] = [
      { ...spec, boot: { ...spec.boot!, params: [...spec.boot!.params, "x=1"] } },
      { ...spec, memoryMiB: 512 },
      { ...spec, vcpus: 2 },
      { ...spec, hotplugPorts: 3 },
      { ...spec, accel: "kvm" },
    ];
    for (const v of variants) assert.notEqual((await templateKey(v)).key, key, JSON.stringify(buildQemuArgs(v)));
  });

  it("is the same wherever the memory file is and whatever it is copied from, and differs from a memfd's", async () => {
    const file = (runDir: string, copyOf?: string): VmSpec => ({ ...at(runDir, "p"), memoryFile: { path: join(runDir, "memory"), ...(copyOf ? { copyOf } : {}) } });
    const built = await templateKey(file(join(dir, "tpl/vm")));
    const restored = await templateKey({ ...file(join(dir, "pod/vm"), join(dir, "tpl/memory")), incoming: true, paused: true });
    assert.equal(built.key, restored.key);
    assert.notEqual(built.key, (await templateKey(at(join(dir, "tpl/vm"), "p"))).key);
  });

  it("changes when the guest image or QEMU is replaced or touched", async () => {
    const key = (await templateKey(spec)).key;
    await utimes(join(dir, "root.erofs"), new Date(), new Date(Date.now() + 5_000));
    const touched = (await templateKey(spec)).key;
    assert.notEqual(touched, key);
    await writeFile(join(dir, "qemu"), "another qemu");
    assert.notEqual((await templateKey(spec)).key, touched);
  });

  it("fails NotFound when a file it hashes is missing", async () => {
    await rm(join(dir, "vmlinux"));
    await assert.rejects(templateKey(spec), (err: unknown) => (err as { kind?: string }).kind === "NotFound");
  });
});

describe("[factory] configuration", () => {
  const base = defaultConfig("/guest");

  it("reads enable_template, template_path and vm_cache_number, on by default", () => {
    assert.deepEqual(base.factory, { enableTemplate: true, templatePath: "/var/lib/vmpod/templates", vmCacheNumber: 0 });
    const { config, warnings } = parseConfig('[factory]\nenable_template = false\ntemplate_path = "/srv/t"\nvm_cache_number = 0\n', "c.toml", "/guest");
    assert.deepEqual(config.factory, { enableTemplate: false, templatePath: "/srv/t", vmCacheNumber: 0 });
    assert.deepEqual(warnings, []);
    assert.throws(() => parseConfig("[factory]\nvm_cache_number = 2\n", "c.toml", "/guest"), /vm_cache_number = 2 is out of range/);
  });

  it("says why a configuration cannot use templates, and the default one can", () => {
    const q35 = base;
    assert.equal(templatesUnusable(q35), undefined);
    const microvm: Config = { ...base, hypervisor: { ...base.hypervisor, machineType: "microvm" } };
    assert.match(templatesUnusable(microvm) ?? "", /machine_type = "microvm"/);
    assert.match(templatesUnusable({ ...q35, hypervisor: { ...q35.hypervisor, sharedFs: "none" } }) ?? "", /shared_fs = "none"/);
    assert.match(templatesUnusable({ ...q35, hypervisor: { ...q35.hypervisor, disableBlockDeviceUse: false } }) ?? "", /disable_block_device_use/);
  });
});
