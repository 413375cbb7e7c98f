/**
 * VM templates under real QEMU (TCG here): pods restored from one template
 * built once for concurrent starts run containers, each with its own
 * hostname, a clock set to the host's and random bytes of its own, and
 * guest RAM in a sparse copy of the template's memory (a memfd QEMU holds
 * alone once it runs); a restored pod is taken over by a restarted engine; a corrupt
 * template (found by its checksum, or refused by QEMU) means a cold boot; a
 * pod asking for a template not built boots cold while it is built in the
 * background; an aborted warm-up or a closed store stops its build's VM; and
 * nothing is left behind.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync } from "node:fs";
import { access, mkdtemp, open, readdir, readFile, readlink, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../../src/common/exec.js";
import { sleep } from "../../../src/common/time.js";
import type { OciProcess, OciSpec } from "../../../src/common/oci-spec.js";
import type { Config } from "../../../src/config/types.js";
import { QemuHypervisor } from "../../../src/hypervisor/qemu.js";
import { VmEngine } from "../../../src/sandbox/engine.js";
import type { PodVm } from "../../../src/sandbox/pod-vm.js";
import { readAll } from "../../../src/sandbox/process-io.js";
import { makeBusyboxRootfs } from "../../helpers/busybox-rootfs.js";
import { assertNothingLeft, processesMentioning } from "../../helpers/leaks.js";
import { vmFixture, type VmFixture } from "../../helpers/vm-fixture.js";
import { openTapIn } from "../guest-agent/tap.js";

const ENV = ["PATH=/bin", "HOME=/root"];

function proc(args: string[]): OciProcess {
  return { args, env: ENV, cwd: "/", user: { uid: 0, gid: 0 } };
}

function spec(args: string[]): OciSpec {
  return {
    ociVersion: "1.1.0",
    process: proc(args),
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    ],
    linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "mount" }], cgroupsPath: "" },
  };
}

function withTemplates(config: Config): Config {
  return {
    ...config,
    hypervisor: { ...config.hypervisor, machineType: "q35" },
    factory: { ...config.factory, enableTemplate: true, templatePath: join(config.runtime.stateRoot, "templates") },
  };
}

/** Runs `args` in a fresh container of `vm` and returns its stdout (exit code 0 asserted). */
async function runIn(vm: PodVm, rootfs: string, id: string, args: string[], adjust: (s: OciSpec) => OciSpec = (s) => s): Promise<string> {
  await vm.createContainer(id, { kind: "dir", path: rootfs }, adjust(spec(args)));
  const io = vm.io(id, "");
  await vm.startContainer(id);
  const [out, err, status] = await Promise.all([readAll(io.stdout), readAll(io.stderr!), io.wait()]);
  assert.equal(status, 0, `${args.join(" ")}: ${err}`);
  await vm.removeContainer(id);
  return out;
}

/** Whether `path` exists. */
async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** Waits until a template build's work directory appears in `dir`; its path. */
async function buildStarted(dir: string): Promise<string> {
  for (;;) {
    const work = (await readdir(dir).catch(() => [] as string[])).find((n) => n.includes(".tmp-"));
    if (work) return join(dir, work);
    await sleep(20);
  }
}

/** Waits until a process names `marker` on its command line (the template VM of a build). */
async function processStarted(marker: string): Promise<void> {
  while ((await processesMentioning(marker)).length === 0) await sleep(20);
}

/** True when the VM's console shows the firmware starting (a cold boot), false for a restored VM. */
async function bootedCold(vm: PodVm): Promise<boolean> {
  return (await readFile(vm.consoleLog, "utf8")).includes("SeaBIOS");
}

describe("VM templates (real QEMU)", function () {
  this.timeout(900_000);
  let fx: VmFixture;
  let rootfsDir: string;
  let templateDir: string;

  before(async function () {
    fx = await vmFixture({ configure: withTemplates });
    templateDir = fx.config.factory.templatePath;
    process.stderr.write(`      acceleration: ${fx.host.accel}; guest image ${fx.image.hash.slice(0, 16)}\n`);
    rootfsDir = await mkdtemp(join(tmpdir(), "vmpod-rootfs-"));
    await makeBusyboxRootfs(rootfsDir);
  });

  afterEach(async function () {
    const failed = this.currentTest?.state === "failed";
    await fx.release(failed, this.currentTest?.fullTitle() ?? "");
  });

  after(async () => {
    await fx?.dispose();
    if (rootfsDir) await rm(rootfsDir, { recursive: true, force: true });
    if (fx) await assertNothingLeft(fx.root);
  });

  it("builds one template for the warm-up and two pods started while it builds; each runs containers with its own hostname, the host's clock and its own random bytes", async () => {
    const store = fx.engine.templates;
    assert.ok(store, "templates are in use with q35 and virtio-fs");
    const warm = fx.engine.warmUp();
    await buildStarted(templateDir);
    const [a, b] = await Promise.all([fx.boot("tpl-a", { hostname: "pod-a" }), fx.boot("tpl-b", { hostname: "pod-b" })]);
    assert.equal(await warm, true);
    assert.equal(store.builds, 1, "one build for the warm-up and both pods");
    assert.equal(await bootedCold(a), false, "pod a was restored, not booted");
    assert.equal(await bootedCold(b), false, "pod b was restored, not booted");
    const script = "hostname; date +%s; head -c 16 /dev/urandom | od -An -tx1; cat /proc/mounts | grep -c virtiofs";
    const outs: string[][] = [];
    for (const [vm, name] of [[a, "a"], [b, "b"]] as const) {
      const before = Date.now() / 1000;
      const out = (await runIn(vm, rootfsDir, `c-${name}`, ["sh", "-c", script])).trim().split("\n");
      const after = Date.now() / 1000;
      // The guest's time lies in [seconds, seconds + 1): within 1 s of the host's while the container ran.
      const seconds = Number(out[1]);
      assert.ok(seconds + 1 > before - 1 && seconds <= after + 1, `guest clock ${out[1]} within 1 s of the host's [${before}, ${after}]`);
      outs.push(out);
    }
    assert.equal(outs[0]?.[0], "pod-a");
    assert.equal(outs[1]?.[0], "pod-b");
    assert.notEqual(outs[0]?.[2], outs[1]?.[2], "random bytes differ between pods");
    assert.match(outs[0]?.[2] ?? "", /^( [0-9a-f]{2}){16}$/);
    // Guest RAM: each pod's own copy of the template's memory, its zero pages holes, held by its QEMU alone.
    const [memory, ...more] = await guestRamFds(a.qemuPid);
    assert.ok(memory !== undefined && more.length === 0, "QEMU holds one memfd for the guest's RAM");
    const st = await stat(memory);
    assert.equal(st.size, fx.config.hypervisor.defaultMemory * 2 ** 20);
    assert.ok(st.blocks * 512 < st.size, `the memory copy is sparse (${st.blocks * 512} of ${st.size} bytes allocated)`);
    assert.deepEqual(await guestRamFds("self"), [], "vmpod closed its own descriptors of the copies");
    assert.equal(await exists(join(a.paths.vmDir, "memory")), false, "no memory file under the state root");
    await a.stop();
    assert.equal((await guestRamFds(b.qemuPid)).length, 1);
  });

  it("hands a restored pod to a restarted engine, which runs containers in it and stops it with its share's daemon", async () => {
    const made: QemuHypervisor[] = [];
    const first = new VmEngine(fx.config, fx.host, () => {
      const hv = new QemuHypervisor();
      made.push(hv);
      return hv;
    }, fx.logger);
    const vm = await first.boot({ id: "tpl-r", hostname: "pod-r" });
    assert.equal(await bootedCold(vm), false);
    const record = JSON.parse(await readFile(join(vm.paths.root, "vm.json"), "utf8")) as { handle: { addedShares?: unknown[] } };
    assert.equal(record.handle.addedShares?.length, 1, "the hot-added share is in the VM record");
    // The first vmpod goes away: its connections close, the VM runs on.
    vm.agentClient.close();
    made.at(-1)?.qmp?.close();
    const restarted = new VmEngine(fx.config, fx.host, () => new QemuHypervisor(), fx.logger);
    const again = await restarted.reattach("tpl-r");
    assert.equal(again.qemuPid, vm.qemuPid);
    assert.equal((await runIn(again, rootfsDir, "c-r", ["hostname"])).trim(), "pod-r");
    await again.stop();
    await vm.exited;
    assert.deepEqual(await processesMentioning(vm.paths.root), [], "QEMU and both virtiofsd are gone");
    assert.equal(await exists(vm.paths.root), false, "its directory is removed");
  });

  it("boots cold when the template's state is corrupt, and drops that template", async () => {
    const [key] = (await readdir(templateDir)).filter((n) => !n.includes("."));
    assert.ok(key, "a template exists");
    const state = join(templateDir, key, "state");
    const handle = await open(state, "r+");
    try {
      const { size } = await stat(state);
      await handle.write(Buffer.alloc(4096, 0xa5), 0, 4096, Math.floor(size / 2));
    } finally {
      await handle.close();
    }
    const vm = await fx.boot("tpl-c", { hostname: "pod-c" });
    assert.equal(await bootedCold(vm), true, "the pod booted cold");
    assert.equal((await runIn(vm, rootfsDir, "c-c", ["hostname"])).trim(), "pod-c");
    assert.deepEqual(await readdir(templateDir), [], "the corrupt template is removed");
  });

  it("boots a pod cold when its template is not built, building it in the background; a new shape (a kernel parameter) is a new template", async () => {
    const store = fx.engine.templates!;
    const builds = store.builds;
    assert.equal(await fx.engine.warmUp(), true, "the default shape's template, dropped above, is built again");
    const first = await fx.boot("tpl-k1", { hostname: "k1" });
    assert.equal(await bootedCold(first), false);
    const params = ["vmpod.test_key=1"];
    const second = await fx.boot("tpl-k2", { hostname: "k2", extraKernelParams: params });
    assert.equal(await bootedCold(second), true, "the pod did not wait for its template");
    assert.equal((await runIn(second, rootfsDir, "c-k2", ["cat", "/proc/cmdline"])).includes("vmpod.test_key=1"), true);
    assert.ok(await store.ensure(fx.engine.templateVmFor({ id: "tpl-k3", extraKernelParams: params }).spec), "the background build ends with a template");
    const third = await fx.boot("tpl-k3", { hostname: "k3", extraKernelParams: params });
    assert.equal(await bootedCold(third), false);
    assert.equal(store.builds, builds + 2, "one template per kernel command line, each built once");
    assert.equal((await readdir(templateDir)).length, 2, "templates of both shapes are kept");
    assert.equal((await runIn(third, rootfsDir, "c-k3", ["cat", "/proc/cmdline"])).includes("vmpod.test_key=1"), true);
  });

  it("boots cold when QEMU refuses a template's state (its manifest matching), and drops that template", async () => {
    let key: string | undefined;
    for (const name of await readdir(templateDir)) {
      const manifest = await readFile(join(templateDir, name, "manifest.json"), "utf8");
      if (!manifest.includes("vmpod.test_key=1")) key = name;
    }
    assert.ok(key, "the template of the default shape exists");
    const state = join(templateDir, key, "state");
    const handle = await open(state, "r+");
    try {
      await handle.write(Buffer.alloc(64, 0x5a), 0, 64, 0);
    } finally {
      await handle.close();
    }
    const manifestPath = join(templateDir, key, "manifest.json");
    const manifest = JSON.parse(await readFile(manifestPath, "utf8")) as { state: { sha256: string } };
    manifest.state.sha256 = createHash("sha256").update(await readFile(state)).digest("hex");
    await writeFile(manifestPath, JSON.stringify(manifest));
    const vm = await fx.boot("tpl-q", { hostname: "pod-q" });
    assert.equal(await bootedCold(vm), true, "the pod booted cold");
    assert.equal((await runIn(vm, rootfsDir, "c-q", ["hostname"])).trim(), "pod-q");
    assert.ok(!(await readdir(templateDir)).includes(key), "the refused template is removed");
    assert.deepEqual(await guestRamFds("self"), [], "the failed restore's memory copy is closed");
  });

  it("stops a template build, its VM and its work directory, when the warm-up is aborted or the store closes", async () => {
    for (const how of ["abort", "close"] as const) {
      const dir = join(fx.config.runtime.stateRoot, `templates-${how}`);
      const config: Config = { ...fx.config, factory: { ...fx.config.factory, templatePath: dir } };
      const engine = new VmEngine(config, fx.host, () => new QemuHypervisor(), fx.logger);
      const aborter = new AbortController();
      const warm = engine.warmUp(how === "abort" ? aborter.signal : undefined);
      const work = await buildStarted(dir);
      await processStarted(work);
      if (how === "abort") {
        aborter.abort(new Error("the daemon stops"));
        await assert.rejects(warm, /the daemon stops/);
      } else {
        await engine.templates!.close();
        assert.equal(await warm, false);
      }
      assert.deepEqual(await processesMentioning(work), [], `${how}: the template VM is gone`);
      assert.deepEqual(await readdir(dir), [], `${how}: the work directory is removed`);
      assert.equal(engine.templates!.builds, 0);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("gives a restored pod its network card, addresses and routes: it answers pings from its network's side and reaches it", async () => {
    assert.equal(await fx.engine.warmUp(), true, "the default shape's template, dropped above, is built again");
    const tag = randomBytes(3).toString("hex");
    const ns = `vmpod-tn-${tag}`;
    const tapName = `tnt${tag}`;
    const mac = `02:54:00:${tag.slice(0, 2)}:${tag.slice(2, 4)}:${tag.slice(4, 6)}`;
    await run("ip", ["netns", "add", ns]);
    let vm: PodVm | undefined;
    try {
      const tapFd = openTapIn(`/run/netns/${ns}`, tapName);
      try {
        for (const args of [["addr", "add", "10.215.0.1/24", "dev", tapName], ["link", "set", "lo", "up"], ["link", "set", tapName, "up"]]) await run("ip", ["-n", ns, ...args]);
        vm = await fx.engine.boot({
          id: "tpl-n",
          hostname: "pod-n",
          network: {
            tapFd,
            nic: { name: "eth0", mac, mtu: 1400, addresses: [{ family: 4, address: "10.215.0.2", prefixLength: 24 }] },
            routes: [{ family: 4, destination: "0.0.0.0/0", gateway: "10.215.0.1", device: "eth0" }],
          },
        });
      } finally {
        // QEMU holds its own copy.
        closeSync(tapFd);
      }
      assert.equal(await bootedCold(vm), false, "the pod was restored");
      await run("ip", ["netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "10", "10.215.0.2"]);
      const withRawSockets = (s: OciSpec): OciSpec => ({
        ...s,
        process: { ...s.process!, capabilities: { bounding: ["CAP_NET_RAW"], effective: ["CAP_NET_RAW"], permitted: ["CAP_NET_RAW"] } },
        mounts: [...(s.mounts ?? []), { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] }],
      });
      const script = "ping -c 1 -W 10 10.215.0.1 >/dev/null && echo reached; cat /sys/class/net/eth0/address";
      const out = await runIn(vm, rootfsDir, "c-n", ["sh", "-c", script], withRawSockets);
      assert.deepEqual(out.trim().split("\n"), ["reached", mac]);
    } finally {
      await vm?.stop();
      await run("ip", ["netns", "del", ns]);
    }
  });
});

/** The descriptors process `pid` holds on a restored VM's RAM (memfds named vmpod-guest-ram). */
async function guestRamFds(pid: number | "self"): Promise<string[]> {
  const dir = `/proc/${pid}/fd`;
  const found: string[] = [];
  for (const fd of await readdir(dir)) {
    const target = await readlink(join(dir, fd)).catch(() => "");
    if (target.startsWith("/memfd:vmpod-guest-ram")) found.push(join(dir, fd));
  }
  return found;
}
