/**
 * The guest image, built (or reused) for real and booted under QEMU with TCG:
 * floor mode stops the VM by itself where the agent would start; a throwaway
 * agent shows node, koffi, crun and cgroup2 working in the guest, and the VM
 * stopping when the agent exits.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { createConnection } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kindOf, messageOf } from "../../../src/common/errors.js";
import { exists } from "../../../src/common/fs.js";
import { CONSOLE_LINES, ensureGuestImage, guestKernelParams, type GuestImage } from "../../../guest/build/index.js";
import { hostTscKhz } from "../../../src/hypervisor/accel.js";
import { bootGuest, processesMentioning, type BootResult } from "./boot.js";

const REPO = join(import.meta.dirname, "../../..");
const REAL_AGENT = join(REPO, "guest/agent/main.ts");
const BOOT_TIMEOUT_MS = 90_000;

/** A one-file agent: reports what the guest has, says hello on its port, exits 5. */
const THROWAWAY_AGENT = `
const fs = require("fs");
const { execFileSync } = require("child_process");
const report = { node: process.version };
try { report.koffi = require("koffi").version; } catch (e) { report.koffi = "ERROR " + e.message; }
try { report.crun = execFileSync("/usr/bin/crun", ["--version"], { encoding: "utf8" }).split("\\n")[0]; } catch (e) { report.crun = "ERROR " + e.message; }
report.mounts = fs.readFileSync("/proc/mounts", "utf8").split("\\n").map((l) => l.split(" ").slice(1, 3).join(" ")).filter(Boolean);
report.subtree = fs.readFileSync("/sys/fs/cgroup/cgroup.subtree_control", "utf8").trim();
report.hostsWritable = (() => { try { fs.writeFileSync("/etc/hosts", "127.0.0.1 localhost\\n"); return true; } catch (e) { return e.message; } })();
for (const port of fs.readdirSync("/sys/class/virtio-ports")) {
  if (fs.readFileSync("/sys/class/virtio-ports/" + port + "/name", "utf8").trim() !== "agent.channel.0") continue;
  const fd = fs.openSync("/dev/" + port, "w");
  fs.writeSync(fd, "hello\\n");
  fs.closeSync(fd);
  report.port = port;
}
console.log("REPORT " + JSON.stringify(report));
process.exit(5);
`;

describe("guest image (QEMU, TCG)", function () {
  this.timeout(10 * 60_000);

  let scratch: string;
  let tscKhz: number | undefined;
  const qemuPids: number[] = [];
  let failedConsole: string | undefined;

  before(async () => {
    scratch = await mkdtemp(join(tmpdir(), "vmpod-guest-test-"));
    tscKhz = await hostTscKhz();
  });

  afterEach(function () {
    if (this.currentTest?.state === "failed" && failedConsole !== undefined) {
      process.stdout.write(`      guest console of the failed boot:\n${failedConsole.replace(/^/gm, "        | ")}\n`);
    }
    failedConsole = undefined;
  });

  after(async () => {
    const alive = qemuPids.filter((pid) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    });
    const mentioning = await processesMentioning(scratch);
    await rm(scratch, { recursive: true, force: true });
    assert.deepEqual(alive, [], "QEMU processes left running");
    assert.deepEqual(mentioning, [], `processes left using ${scratch}`);
    assert.equal(await exists(scratch), false);
    // Builds of this process only: other processes may be building at the same time.
    const out = await readdir(join(REPO, "guest/out"));
    assert.deepEqual(
      out.filter((e) => e.startsWith(".tmp-") && e.includes(`-${process.pid}-`)),
      [],
      "temporary build directories left in guest/out",
    );
  });

  async function boot(image: GuestImage, options: { floor: boolean; pvh: boolean; agentSocket?: string; onSpawn?: (pid: number) => void }): Promise<BootResult> {
    const result = await bootGuest(image, {
      params: guestKernelParams({ ...(tscKhz === undefined ? {} : { tscKhz }), floor: options.floor }),
      timeoutMs: BOOT_TIMEOUT_MS,
      pvh: options.pvh,
      ...(options.agentSocket === undefined ? {} : { agentSocket: options.agentSocket }),
      onSpawn: (pid) => {
        qemuPids.push(pid);
        options.onSpawn?.(pid);
      },
    });
    failedConsole = result.console + (result.stderr === "" ? "" : `\n[qemu stderr] ${result.stderr}`);
    return result;
  }

  function assertStoppedByItself(result: BootResult): void {
    assert.equal(result.timedOut, false, `QEMU did not exit within ${BOOT_TIMEOUT_MS} ms`);
    assert.equal(result.signal, null);
    assert.equal(result.exitCode, 0, "QEMU exits 0 when the guest reboots under -no-reboot");
  }

  describe("with the real agent", () => {
    let image: GuestImage | undefined;

    before(async function () {
      if (!(await exists(REAL_AGENT))) {
        process.stdout.write("      NOTE: guest/agent/main.ts is missing: the image with the real agent is NOT built or booted\n");
        return;
      }
      image = await ensureGuestImage({ log: (m) => process.stdout.write(`      guest image: ${m}\n`) });
    });

    it("cannot be built without guest/agent/main.ts, and says so", async function () {
      if (await exists(REAL_AGENT)) {
        // The agent exists: check the same refusal with an entry point that does not.
        await assert.rejects(ensureGuestImage({ agentEntry: join(scratch, "missing/main.ts") }), (err: unknown) => {
          assert.equal(kindOf(err), "FailedPrecondition");
          assert.match(messageOf(err), /missing\/main\.ts does not exist/);
          return true;
        });
        return;
      }
      await assert.rejects(ensureGuestImage(), (err: unknown) => {
        assert.equal(kindOf(err), "FailedPrecondition");
        assert.match(messageOf(err), /guest\/agent\/main\.ts does not exist/);
        return true;
      });
    });

    it("holds the kernel, the initramfs, the root image and a manifest", async function () {
      if (image === undefined) {
        process.stdout.write("      skipped: guest/agent/main.ts is missing\n");
        this.skip();
      }
      for (const file of [image.kernel, image.initrd, image.rootImage, join(image.dir, "manifest.json")]) {
        assert.ok((await stat(file)).size > 0, file);
      }
      assert.equal(image.manifest.hash, image.hash);
      assert.equal(image.manifest.agentEntry, "guest/agent/main.ts");
      assert.equal(image.manifest.sizes.root % (2 * 1024 * 1024), 0, "root image padded to 2 MiB");
      assert.match(image.manifest.kernelVersion, /-cloud-amd64$/);
    });

    it("boots to the floor and QEMU exits by itself (bzImage)", async function () {
      if (image === undefined) {
        process.stdout.write("      skipped: guest/agent/main.ts is missing\n");
        this.skip();
      }
      const result = await boot(image, { floor: true, pvh: false });
      assertStoppedByItself(result);
      assert.ok(result.console.includes(CONSOLE_LINES.floor), "the floor line is on the console");
      assert.ok(!result.console.includes(CONSOLE_LINES.agentExited), "the agent did not run");
      process.stdout.write(`      floor boot (bzImage): ${(result.wallMs / 1000).toFixed(2)} s from QEMU start to exit\n`);
    });

    it("is reused by a second ensureGuestImage", async function () {
      if (image === undefined) {
        process.stdout.write("      skipped: guest/agent/main.ts is missing\n");
        this.skip();
      }
      const again = await ensureGuestImage();
      assert.equal(again.reused, true);
      assert.equal(again.hash, image.hash);
      assert.equal(again.dir, image.dir);
    });
  });

  describe("with a throwaway agent", () => {
    let image: GuestImage;

    before(async () => {
      const agent = join(scratch, "agent.js");
      await writeFile(agent, THROWAWAY_AGENT);
      image = await ensureGuestImage({ agentEntry: agent, log: (m) => process.stdout.write(`      guest image: ${m}\n`) });
    });

    it("is reused by a second ensureGuestImage, wherever the agent file lies", async () => {
      const elsewhere = join(scratch, "elsewhere");
      await rm(elsewhere, { recursive: true, force: true });
      await mkdir(elsewhere);
      await writeFile(join(elsewhere, "agent.js"), THROWAWAY_AGENT);
      const again = await ensureGuestImage({ agentEntry: join(elsewhere, "agent.js") });
      assert.equal(again.reused, true);
      assert.equal(again.hash, image.hash);
    });

    it("boots to the floor by PVH and QEMU exits by itself", async function () {
      if (image.vmlinux === undefined) {
        process.stdout.write("      skipped: this kernel could not be unpacked for a PVH boot\n");
        this.skip();
      }
      const result = await boot(image, { floor: true, pvh: true });
      assertStoppedByItself(result);
      assert.ok(result.console.includes(CONSOLE_LINES.floor), "the floor line is on the console");
      process.stdout.write(`      floor boot (PVH): ${(result.wallMs / 1000).toFixed(2)} s from QEMU start to exit\n`);
    });

    it("runs node, koffi and crun with cgroup2, and stops the VM when the agent exits", async () => {
      const socket = join(scratch, "agent.sock");
      let received = "";
      let connectError: unknown;
      let connect: Promise<void> = Promise.resolve();
      const result = await boot(image, {
        floor: false,
        pvh: image.vmlinux !== undefined,
        agentSocket: socket,
        // QEMU listens on the socket; the guest's writes wait until the host end is open.
        onSpawn: () => {
          connect = connectWhenListening(socket, (data) => (received += data)).catch((err: unknown) => {
            connectError = err;
          });
        },
      });
      await connect;
      assert.equal(connectError, undefined, "connected to the agent's port");
      assertStoppedByItself(result);
      assert.ok(result.console.includes(`${CONSOLE_LINES.agentExited}5`), "the exit status is on the console");
      const reportLine = /^REPORT (.*)$/m.exec(result.console)?.[1];
      assert.ok(reportLine !== undefined, "the agent reported");
      const report = JSON.parse(reportLine) as Record<string, unknown>;
      assert.match(String(report["node"]), /^v\d+\./);
      assert.match(String(report["koffi"]), /^\d+\.\d+/);
      assert.match(String(report["crun"]), /^crun version /);
      const mounts = report["mounts"] as string[];
      for (const m of ["/ erofs", "/proc proc", "/sys sysfs", "/dev devtmpfs", "/dev/pts devpts", "/dev/shm tmpfs", "/run tmpfs", "/tmp tmpfs", "/sys/fs/cgroup cgroup2"]) {
        assert.ok(mounts.includes(m), `mounted: ${m}`);
      }
      for (const c of ["cpu", "memory", "pids"]) assert.ok(String(report["subtree"]).split(" ").includes(c), `cgroup controller ${c}`);
      assert.equal(report["hostsWritable"], true, "/etc/hosts is writable through /run");
      assert.equal(received, "hello\n", "the agent's port reached the host");
    });
  });
});

/** Connects to QEMU's socket once it exists and collects what the guest writes. */
async function connectWhenListening(path: string, onData: (data: string) => void): Promise<void> {
  for (let i = 0; i < 200 && !(await exists(path)); i++) await new Promise((r) => setTimeout(r, 25));
  await new Promise<void>((resolve, reject) => {
    const conn = createConnection(path);
    conn.setEncoding("utf8");
    conn.on("data", onData);
    conn.on("error", reject);
    conn.on("close", () => resolve());
  });
}
