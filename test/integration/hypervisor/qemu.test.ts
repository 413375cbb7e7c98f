/**
 * QemuHypervisor against the real QEMU (TCG here) and virtiofsd. Needs no
 * guest image: VMs run paused, or boot the host's kernel with no root file
 * system so that it panics and QEMU exits (`panic=-1`, `-no-reboot`).
 */
import assert from "node:assert/strict";
import { constants } from "node:fs";
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { hostTscKhz } from "../../../src/hypervisor/accel.js";
import type { VmHandle } from "../../../src/hypervisor/hypervisor.js";
import { QemuHypervisor } from "../../../src/hypervisor/qemu.js";
import { vmPaths, type VmSpec } from "../../../src/hypervisor/spec.js";

const QEMU = "/usr/bin/qemu-system-x86_64";
const VIRTIOFSD = "/usr/lib/qemu/virtiofsd";

/** The host's kernel, if it has one to boot. */
async function hostKernel(): Promise<string | undefined> {
  const names = (await readdir("/boot").catch(() => [] as string[])).filter((n) => n.startsWith("vmlinuz-")).sort();
  const last = names.at(-1);
  return last === undefined ? undefined : join("/boot", last);
}

/** Live (not zombie) processes whose command line mentions `marker`. */
async function processesMentioning(marker: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const stat = await readFile(`/proc/${name}/stat`, "utf8");
      if (/\) [ZX] /.test(stat)) continue;
      const cmdline = (await readFile(`/proc/${name}/cmdline`, "utf8")).replaceAll("\0", " ");
      if (cmdline.includes(marker)) found.push(`${name}: ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function gone(path: string): Promise<boolean> {
  return access(path, constants.F_OK).then(
    () => false,
    () => true,
  );
}

/** Polls the VM's console until `pattern` shows up. */
async function waitForConsole(hv: QemuHypervisor, pattern: RegExp, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pattern.test(await hv.consoleTail(256 * 1024))) {
    if (Date.now() > deadline) assert.fail(`console never showed ${pattern}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const isKind = (kind: string, pattern?: RegExp) => (err: unknown) => {
  if (!(err instanceof VmpodError)) return false;
  assert.equal(err.kind, kind, err.message);
  if (pattern) assert.match(err.message, pattern);
  return true;
};

describe("QemuHypervisor with real QEMU", function () {
  this.timeout(120_000);
  let root: string;
  let vms: QemuHypervisor[];

  before(async function () {
    try {
      await access(QEMU, constants.X_OK);
    } catch {
      console.log(`    (skipped: no ${QEMU})`);
      this.skip();
    }
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-hv-"));
    vms = [];
  });

  afterEach(async function () {
    const failed = this.currentTest?.state === "failed";
    for (const vm of vms) {
      if (failed) {
        const tail = await vm.consoleTail();
        if (tail !== "") console.log(`    console of ${vm.spec?.id}:\n${tail}`);
      }
      await vm.cleanup();
      if (vm.spec) assert.ok(await gone(vm.spec.runDir), `run dir ${vm.spec.runDir} is removed`);
      const pid = vm.pid;
      if (pid !== undefined) assert.equal((await processesMentioning(`vmpod-${vm.spec?.id}`)).length, 0, `QEMU ${pid} is gone`);
    }
    // Processes can take a moment to be reaped after being killed.
    let left = await processesMentioning(root);
    for (let i = 0; i < 50 && left.length > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      left = await processesMentioning(root);
    }
    assert.deepEqual(left, [], "no qemu or virtiofsd left");
    const files = await readdir(root);
    assert.deepEqual(files.filter((f) => f.startsWith("vm")), [], "no run dir left");
    await rm(root, { recursive: true, force: true });
  });

  function spec(name: string, extra: Partial<VmSpec> = {}): VmSpec {
    const runDir = join(root, name);
    const paths = vmPaths(runDir);
    return {
      id: name,
      qemuPath: QEMU,
      runDir,
      machine: "microvm",
      accel: "tcg",
      vcpus: 1,
      memoryMiB: 128,
      qmpSocket: paths.qmpSocket,
      consoleLog: paths.consoleLog,
      agent: { kind: "virtio-serial", socketPath: paths.agentSocket, name: "agent.channel.0" },
      ...extra,
    };
  }

  function vm(options: ConstructorParameters<typeof QemuHypervisor>[0] = {}): QemuHypervisor {
    const hv = new QemuHypervisor(options);
    vms.push(hv);
    return hv;
  }

  it("runs a paused q35 VM and drives it over QMP: status, cont, stop, quit", async () => {
    const hv = vm();
    const s = spec("vm-paused", { machine: "q35", paused: true });
    await hv.prepare(s);
    await hv.start();
    const qmp = hv.qmp!;
    const prelaunch = await qmp.queryStatus();
    assert.deepEqual([prelaunch.status, prelaunch.running], ["prelaunch", false]);
    const resumed = qmp.waitForEvent("RESUME");
    await qmp.cont();
    await resumed;
    assert.equal((await qmp.queryStatus()).running, true);
    const stopped = qmp.waitForEvent("STOP");
    await qmp.stop();
    await stopped;
    const paused = await qmp.queryStatus();
    assert.deepEqual([paused.status, paused.running], ["paused", false]);
    const shutdown = qmp.waitForEvent("SHUTDOWN");
    await hv.stop();
    assert.equal((await shutdown).data["reason"], "host-qmp-quit");
    assert.deepEqual(await hv.wait(), { code: 0, signal: null });
    await hv.stop(); // idempotent
  });

  it("boots the host kernel on microvm under TCG until it panics, and QEMU exits", async function () {
    const kernel = await hostKernel();
    if (kernel === undefined) {
      console.log("    (skipped: no /boot/vmlinuz-*)");
      this.skip();
    }
    const tscKhz = await hostTscKhz();
    const hv = vm();
    const s = spec("vm-boot", {
      vcpus: 2,
      boot: { kernel, params: ["console=ttyS0", "panic=-1"] },
      ...(tscKhz === undefined ? {} : { tscKhz }),
    });
    await hv.prepare(s);
    await hv.start();
    assert.deepEqual(await hv.wait(), { code: 0, signal: null });
    const output = await hv.consoleTail(64 * 1024);
    assert.match(output, /Linux version/);
    const exit = await hv.exitError();
    assert.match(exit?.message ?? "", /^QEMU exited with code 0: console log ends with:\n[^]*Kernel panic - not syncing: VFS: Unable to mount root fs/);
  });

  it("kills a QEMU that does not answer quit once the stop timeout passes", async () => {
    const hv = vm();
    await hv.prepare(spec("vm-stuck", { paused: true }));
    await hv.start();
    process.kill(hv.pid!, "SIGSTOP");
    await hv.stop({ timeoutMs: 500 });
    assert.deepEqual(await hv.wait(), { code: null, signal: "SIGKILL" });
  });

  it("names a missing QEMU binary and leaves nothing behind", async () => {
    const hv = vm();
    const missing = join(root, "no-such-qemu");
    await assert.rejects(hv.prepare(spec("vm-noqemu", { qemuPath: missing })), isKind("FailedPrecondition", new RegExp(`QEMU binary not found: ${missing}`)));
    assert.ok(await gone(join(root, "vm-noqemu")));
    await hv.cleanup();
  });

  it("names a missing kernel and leaves nothing behind", async () => {
    const hv = vm();
    const missing = join(root, "no-such-kernel");
    await assert.rejects(
      hv.prepare(spec("vm-nokernel", { boot: { kernel: missing, params: [] } })),
      isKind("FailedPrecondition", new RegExp(`kernel not found: ${missing}`)),
    );
    assert.ok(await gone(join(root, "vm-nokernel")));
  });

  it("reports QEMU's stderr when it dies while starting, and cleanup leaves nothing", async () => {
    const kernel = join(root, "garbage-kernel");
    await writeFile(kernel, Buffer.alloc(4096, 0x5a));
    const hv = vm();
    await hv.prepare(spec("vm-badkernel", { boot: { kernel, params: [] } }));
    await assert.rejects(hv.start(), isKind("Internal", /^start qemu: QEMU exited with code 1: qemu.*invalid kernel header/));
    await assert.rejects(hv.start(), isKind("FailedPrecondition"));
    await hv.cleanup();
    await hv.cleanup(); // idempotent
  });

  it("gives up starting when aborted, and cleanup leaves nothing", async () => {
    const hv = vm();
    await hv.prepare(spec("vm-abort", { paused: true }));
    await assert.rejects(hv.start({ signal: AbortSignal.abort() }), isKind("Canceled", /^start qemu: /));
    assert.equal(await hv.exitError().then((e) => e?.kind), "Internal", "QEMU was stopped");
  });

  it("refuses a run directory that exists and leaves it alone", async () => {
    const runDir = join(root, "vm-taken");
    await mkdir(runDir);
    await writeFile(join(runDir, "qmp.sock"), "someone else's");
    const hv = new QemuHypervisor();
    await assert.rejects(hv.prepare(spec("vm-taken")), isKind("AlreadyExists"));
    await hv.cleanup();
    assert.equal(await readFile(join(runDir, "qmp.sock"), "utf8"), "someone else's");
    await rm(runDir, { recursive: true });
  });

  describe("with virtio-fs", function () {
    before(async function () {
      try {
        await access(VIRTIOFSD, constants.X_OK);
      } catch {
        console.log(`    (skipped: no ${VIRTIOFSD})`);
        this.skip();
      }
    });

    const virtiofsd = { daemonPath: VIRTIOFSD, cache: "auto", threadPoolSize: 1 } as const;

    async function shared(name: string): Promise<string> {
      const dir = join(root, name);
      await mkdir(dir);
      await writeFile(join(dir, "hello"), "world");
      return dir;
    }

    it("starts virtiofsd in prepare, connects QEMU to it, and stops and removes both", async () => {
      const source = await shared("share");
      const hv = vm();
      const s = spec("vm-fs", {
        paused: true,
        sharedFs: { tag: "vmpod", sourceDir: source, socketPath: vmPaths(join(root, "vm-fs")).virtiofsSocket("fs0") },
        virtiofsd,
      });
      await hv.prepare(s);
      assert.ok((await stat(s.sharedFs!.socketPath)).isSocket());
      assert.ok((await processesMentioning(s.sharedFs!.socketPath)).length > 0, "virtiofsd runs");
      await hv.start();
      const type = await hv.qmp!.execute("qom-get", { path: "/machine/peripheral/fs0", property: "type" });
      assert.equal(type, "vhost-user-fs-device");
      await hv.stop();
    });

    it("cleans up virtiofsd after a prepare that was never started", async () => {
      const source = await shared("share2");
      const hv = vm();
      await hv.prepare(
        spec("vm-fs-prepared", { sharedFs: { tag: "t", sourceDir: source, socketPath: join(root, "vm-fs-prepared", "v.sock") }, virtiofsd }),
      );
    });

    it("reports virtiofsd's stderr when it fails, and leaves nothing behind", async () => {
      const source = await shared("share3");
      const fake = join(root, "fake-virtiofsd");
      await writeFile(fake, "#!/bin/sh\necho 'fuse: unknown option sandbox' >&2\nexit 1\n");
      await chmod(fake, 0o755);
      const hv = vm();
      await assert.rejects(
        hv.prepare(spec("vm-fs-bad", { sharedFs: { tag: "t", sourceDir: source, socketPath: join(root, "vm-fs-bad", "v.sock") }, virtiofsd: { ...virtiofsd, daemonPath: fake } })),
        isKind("Internal", /^start virtiofsd: virtiofsd exited with code 1: fuse: unknown option sandbox$/),
      );
      assert.ok(await gone(join(root, "vm-fs-bad")));
    });

    it("adds and removes a share on a running q35 VM over QMP", async function () {
      const kernel = await hostKernel();
      if (kernel === undefined) {
        console.log("    (skipped: no /boot/vmlinuz-*)");
        this.skip();
      }
      const source = await shared("share4");
      const hv = vm({ unplugTimeoutMs: 60_000 });
      // The host kernel waits for a root disk that never comes, with PCIe
      // hot-plug (built in) answering meanwhile.
      const boot = { kernel, params: ["console=ttyS0", "root=/dev/vda", "rootwait"] };
      await hv.prepare(spec("vm-hotplug", { machine: "q35", boot, sharedMemory: true, hotplugPorts: 1, virtiofsd }));
      await hv.start();
      await waitForConsole(hv, /Waiting for root device/);
      await hv.addDevice({ kind: "virtio-fs", id: "share1", tag: "late", sourceDir: source });
      assert.equal(await hv.qmp!.execute("qom-get", { path: "/machine/peripheral/share1", property: "type" }), "vhost-user-fs-pci");
      // virtiofsd forks into its sandbox once QEMU connects: one or two processes.
      assert.ok((await processesMentioning(join(root, "vm-hotplug", "vfsd-share1.sock"))).length > 0, "its virtiofsd runs");
      await assert.rejects(hv.addDevice({ kind: "virtio-fs", id: "share2", tag: "more", sourceDir: source }), isKind("ResourceExhausted"));
      // The guest has enumerated the new virtio-fs function (1af4:105a).
      await waitForConsole(hv, /pci 0000:01:00.0: BAR \d+ .*: assigned/);
      await hv.removeDevice("share1");
      await assert.rejects(hv.qmp!.execute("qom-get", { path: "/machine/peripheral/share1", property: "type" }), isKind("NotFound"));
      assert.deepEqual(await processesMentioning(join(root, "vm-hotplug", "vfsd-share1.sock")), [], "its virtiofsd is gone");
      await assert.rejects(hv.removeDevice("share1"), isKind("NotFound"));
    });

    /** A paused VM with a share, started by one hypervisor object and handed over to another (as across a vmpod restart). */
    async function handedOver(name: string): Promise<{ first: QemuHypervisor; second: QemuHypervisor; s: VmSpec; handle: VmHandle }> {
      const source = await shared(`share-${name}`);
      const first = vm();
      const s = spec(name, { paused: true, sharedFs: { tag: "vmpod", sourceDir: source, socketPath: vmPaths(join(root, name)).virtiofsSocket("fs0") }, virtiofsd });
      await first.prepare(s);
      await first.start();
      const handle = await first.handle();
      assert.equal(handle.qemu.pid, first.pid);
      assert.ok(handle.virtiofsd, "the boot share's daemon is in the handle");
      // What a dying vmpod leaves: the VM runs on, its control channel closed.
      first.qmp!.close();
      return { first, second: vm(), s, handle };
    }

    it("hands a running VM over to a new hypervisor object, which drives it, stops it and its virtiofsd", async () => {
      const { second, s, handle } = await handedOver("vm-adopt");
      await second.adopt(s, handle);
      assert.equal(second.pid, handle.qemu.pid);
      assert.equal((await second.qmp!.queryStatus()).status, "prelaunch");
      await second.stop();
      assert.deepEqual(await second.wait(), { code: null, signal: null }, "the exit status of a process vmpod did not start is unknown");
      assert.deepEqual(await processesMentioning(join(root, "vm-adopt")), [], "QEMU and virtiofsd are gone");
    });

    it("sees an adopted VM exit when something else kills it", async () => {
      const { second, s, handle } = await handedOver("vm-adopt-killed");
      await second.adopt(s, handle);
      process.kill(handle.qemu.pid, "SIGKILL");
      assert.deepEqual(await second.wait(), { code: null, signal: null });
    });

    it("refuses to adopt a process whose pid now names another, and stops nothing", async () => {
      const { first, second, s, handle } = await handedOver("vm-adopt-stale");
      await assert.rejects(second.adopt(s, { ...handle, qemu: { pid: handle.qemu.pid, startTime: "1" } }), isKind("NotFound", /no longer runs/));
      assert.ok((await processesMentioning(join(root, "vm-adopt-stale"))).length >= 2, "QEMU and virtiofsd still run");
      await first.stop();
    });

    it("refuses hot-plug on microvm", async () => {
      const source = await shared("share5");
      const hv = vm();
      await hv.prepare(spec("vm-nohotplug", { paused: true, sharedMemory: true, virtiofsd }));
      await hv.start();
      await assert.rejects(hv.addDevice({ kind: "virtio-fs", id: "s", tag: "t", sourceDir: source }), isKind("FailedPrecondition", /microvm has no hot-plug/));
    });
  });
});
