/**
 * The engine end to end under real QEMU (TCG here): a VM boots, its agent
 * answers, a container from a busybox root filesystem made on the host runs
 * in it, with output, exit codes, exec, signals and a terminal; and after
 * each test nothing is left on the host.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import type { OciProcess, OciSpec } from "../../../src/common/oci-spec.js";
import type { Config } from "../../../src/config/types.js";
import type { PodVm } from "../../../src/sandbox/pod-vm.js";
import { readAll } from "../../../src/sandbox/process-io.js";
import { makeBusyboxRootfs } from "../../helpers/busybox-rootfs.js";
import { assertNothingLeft } from "../../helpers/leaks.js";
import { vmFixture, type VmFixture } from "../../helpers/vm-fixture.js";

const ENV = ["PATH=/bin", "HOME=/root"];

function proc(args: string[], extra: Partial<OciProcess> = {}): OciProcess {
  return { args, env: ENV, cwd: "/", user: { uid: 0, gid: 0 }, ...extra };
}

function spec(args: string[], extra: Partial<OciProcess> = {}): OciSpec {
  return {
    ociVersion: "1.1.0",
    process: proc(args, extra),
    hostname: "c",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    ],
    linux: { namespaces: [{ type: "pid" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }], cgroupsPath: "" },
  };
}

describe("pod VM engine (real QEMU)", function () {
  this.timeout(600_000);
  let fx: VmFixture;
  let rootfsDir: string;

  before(async function () {
    fx = await vmFixture();
    process.stderr.write(`      acceleration: ${fx.host.accel}; guest image ${fx.image.hash.slice(0, 16)}\n`);
    rootfsDir = await mkdtemp(join(tmpdir(), "vmpod-rootfs-"));
    await makeBusyboxRootfs(rootfsDir);
  });

  after(async () => {
    await fx?.dispose();
    if (rootfsDir) await rm(rootfsDir, { recursive: true, force: true });
  });

  describe("one VM, many containers", () => {
    let vm: PodVm;

    before(async () => {
      vm = await fx.boot("pod1", { hostname: "pod-one" });
    });

    after(async () => {
      await vm?.stop();
      await fx.release(false, "");
      await assertNothingLeft(fx.root);
    });

    afterEach(async function () {
      if (this.currentTest?.state === "failed") await fx.keepConsoles(this.currentTest.fullTitle());
    });

    it("runs echo hello: stdout is hello, exit code 0", async () => {
      await vm.createContainer("c-echo", { kind: "dir", path: rootfsDir }, spec(["echo", "hello"]));
      const io = vm.io("c-echo", "");
      await vm.startContainer("c-echo");
      const [out, err, status] = await Promise.all([readAll(io.stdout), readAll(io.stderr!), io.wait()]);
      assert.equal(out, "hello\n");
      assert.equal(err, "");
      assert.equal(status, 0);
      await vm.removeContainer("c-echo");
    });

    it("reports a failing command's exit code and its stderr", async () => {
      await vm.createContainer("c-fail", { kind: "dir", path: rootfsDir }, spec(["sh", "-c", "echo oops >&2; exit 3"]));
      const io = vm.io("c-fail", "");
      await vm.startContainer("c-fail");
      const [err, status] = await Promise.all([readAll(io.stderr!), io.wait(), readAll(io.stdout)]);
      assert.equal(err, "oops\n");
      assert.equal(status, 3);
      await vm.removeContainer("c-fail");
    });

    it("execs a second process into a running container, then signals and waits", async () => {
      await vm.createContainer("c-long", { kind: "dir", path: rootfsDir }, spec(["sleep", "1000"]));
      await vm.startContainer("c-long");
      const io = await vm.exec("c-long", "e1", proc(["sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; read line; echo got:$line"]), { stdin: true });
      io.stdin!.end("ping\n");
      const [out, status] = await Promise.all([readAll(io.stdout), io.wait()]);
      assert.equal(out, "sleep 1000 got:ping\n");
      assert.equal(status, 0);
      await vm.signal("c-long", "", 9);
      assert.equal(await vm.wait("c-long"), 128 + 9);
      assert.equal(await vm.wait("c-long"), 128 + 9, "a second wait gives the same status");
      await vm.removeContainer("c-long");
    });

    it("gives a terminal process a tty that follows resizes", async () => {
      await vm.createContainer("c-tty", { kind: "dir", path: rootfsDir }, spec(["sleep", "1000"]));
      await vm.startContainer("c-tty");
      const io = await vm.exec("c-tty", "t1", proc(["sh", "-c", "tty; read x; stty size"], { terminal: true, consoleSize: { height: 24, width: 80 } }), { stdin: true });
      assert.equal(io.stderr, undefined);
      let text = "";
      const ended = new Promise<void>((resolve, reject) => {
        io.stdout.on("data", (chunk: Buffer) => (text += chunk.toString().replace(/\r/g, "")));
        io.stdout.on("end", resolve);
        io.stdout.on("error", reject);
      });
      // The terminal echoes input: send it only once the first line is out.
      while (!/\n/.test(text)) await new Promise((resolve) => setTimeout(resolve, 20));
      assert.match(text, /^\/dev\/pts\/\d+\n/);
      await io.resize(33, 101);
      io.stdin!.write("go\n");
      const status = await io.wait();
      await ended;
      assert.match(text, /^33 101$/m);
      assert.equal(status, 0);
      await vm.removeContainer("c-tty");
    });

    it("shares the pod's hostname, clock and fresh random seed with its containers", async () => {
      const agent = vm.agentClient;
      await agent.setGuestDateTime(new Date());
      await agent.reseedRandomDev(new Uint8Array(64).fill(7));
      await vm.createContainer("c-host", { kind: "dir", path: rootfsDir }, spec(["sh", "-c", "hostname; date +%s"]));
      const io = vm.io("c-host", "");
      await vm.startContainer("c-host");
      const [out, status] = await Promise.all([readAll(io.stdout), io.wait()]);
      const [hostname, seconds] = out.trim().split("\n");
      assert.equal(hostname, "pod-one");
      assert.ok(Math.abs(Number(seconds) - Date.now() / 1000) < 5, `guest clock ${seconds} is near the host's`);
      assert.equal(status, 0);
      await vm.removeContainer("c-host");
    });

    it("reads a container's cgroup stats, applies new limits, and reports an OOM kill", async () => {
      await vm.createContainer("c-mem", { kind: "dir", path: rootfsDir }, {
        ...spec(["sh", "-c", "read go; head -c 200000000 /dev/zero | tail"]),
        linux: { ...spec([]).linux, resources: { memory: { limit: 256 * 1024 * 1024 } } },
      });
      const io = vm.io("c-mem", "", { stdin: true });
      await vm.startContainer("c-mem");
      const stats = await vm.stats("c-mem");
      assert.ok(stats.memoryUsageBytes > 0n, "memory usage is read from the guest's cgroup");
      assert.equal(stats.memoryLimitBytes, 256n * 1024n * 1024n);
      await vm.update("c-mem", { memory: { limit: 24 * 1024 * 1024 } });
      assert.equal((await vm.stats("c-mem")).memoryLimitBytes, 24n * 1024n * 1024n);
      const oom = vm.agentClient.nextOomEvent();
      io.stdin!.end("go\n");
      assert.equal(await oom, "c-mem");
      assert.equal(await io.wait(), 128 + 9);
      await vm.removeContainer("c-mem");
    });

    it("refuses bad ids and unknown processes with clear errors", async () => {
      await assert.rejects(vm.createContainer("../evil", { kind: "dir", path: rootfsDir }, spec(["true"])), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
      await assert.rejects(vm.wait("no-such-container"), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound" && /no-such-container/.test(e.message));
      await vm.createContainer("c-x", { kind: "dir", path: rootfsDir }, spec(["sleep", "1000"]));
      await vm.startContainer("c-x");
      await assert.rejects(vm.wait("c-x", "no-such-exec"), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound");
      await vm.removeContainer("c-x");
    });
  });

  describe("failure paths leave nothing behind", () => {
    afterEach(async function () {
      await fx.release(this.currentTest?.state === "failed", this.currentTest?.fullTitle() ?? "test");
      await assertNothingLeft(fx.root);
    });

    async function expectBootFailure(configure: (c: Config) => Config, check: (e: unknown) => boolean): Promise<void> {
      const bad = await vmFixture({ configure });
      try {
        await assert.rejects(bad.engine.boot({ id: "bad", hostname: "x" }), check);
        await assertNothingLeft(bad.root);
      } finally {
        await bad.dispose();
      }
    }

    it("a missing QEMU binary is a clear error", async () => {
      await expectBootFailure(
        (c) => ({ ...c, hypervisor: { ...c.hypervisor, path: "/nonexistent/qemu" } }),
        (e) => e instanceof VmpodError && e.kind === "FailedPrecondition" && /\/nonexistent\/qemu/.test(e.message),
      );
    });

    it("a missing kernel is a clear error", async () => {
      await expectBootFailure(
        (c) => ({ ...c, hypervisor: { ...c.hypervisor, kernel: "/nonexistent/vmlinuz" } }),
        (e) => e instanceof VmpodError && e.kind === "FailedPrecondition" && /\/nonexistent\/vmlinuz/.test(e.message),
      );
    });

    it("an agent that never answers hits the deadline", async () => {
      await expectBootFailure(
        // A cold boot: the agent of a VM restored from a template answers within the deadline.
        (c) => ({ ...c, agent: { ...c.agent, dialTimeoutMs: 1_500 }, factory: { ...c.factory, enableTemplate: false } }),
        (e) => e instanceof VmpodError && e.kind === "DeadlineExceeded" && /did not answer within 1500 ms/.test(e.message),
      );
    });

    it("a VM that stops before its agent starts is reported as gone", async () => {
      await assert.rejects(fx.boot("floor", { extraKernelParams: ["vmpod.floor=1"] }), (e: unknown) => e instanceof VmpodError && e.kind === "Unavailable" && /VM exited during boot/.test(e.message));
    });

    it("a VM that dies mid-call fails the call and can still be stopped", async () => {
      const vm = await fx.boot("dies");
      const rootfs = rootfsDir;
      await vm.createContainer("c1", { kind: "dir", path: rootfs }, spec(["sleep", "1000"]));
      await vm.startContainer("c1");
      const waiting = vm.wait("c1");
      process.kill(await qemuPid(fx.root, "dies"), "SIGKILL");
      await assert.rejects(waiting, (e: unknown) => e instanceof VmpodError && e.kind === "Unavailable");
      await vm.exited;
      await vm.stop();
    });
  });
});

async function qemuPid(root: string, id: string): Promise<number> {
  const { processesMentioning } = await import("../../helpers/leaks.js");
  const found = (await processesMentioning(join(root, "sandboxes", id, "vm"))).find((p) => p.includes("qemu-system"));
  assert.ok(found, "qemu process of the VM");
  return Number(found.split(":")[0]);
}
