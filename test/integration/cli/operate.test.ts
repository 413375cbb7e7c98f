/**
 * The operator's commands for real, on this host: `vmpod check` and
 * `vmpod env` as a process and through their functions, `vmpod config
 * paths`, `vmpod serve` refusing a configuration whose files are missing,
 * and a running daemon reloading its configuration on SIGHUP. What the
 * commands say is compared with what the host is, looked at independently.
 */
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { release, tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { runChecks } from "../../../src/cli/check.js";
import { hostProbe } from "../../../src/cli/host-probe.js";
import { exists, sha256File } from "../../../src/common/fs.js";
import { mountPoints } from "../../../src/common/mount.js";
import { loadConfigFile } from "../../../src/config/load.js";
import { createCriClient } from "../../../src/cri/client.js";
import type { GuestImage } from "../../../guest/build/index.js";
import { guestImage } from "../../helpers/vm-fixture.js";
import { processesMentioning } from "../../helpers/leaks.js";
import { runVmpod } from "../../helpers/vmpod-cli.js";

const REPO = join(import.meta.dirname, "../../..");
const QEMU = "/usr/bin/qemu-system-x86_64";

describe("vmpod check, env, config paths and SIGHUP on this host", function () {
  this.timeout(5 * 60_000);

  let image: GuestImage;
  let root: string;
  let configPath: string;
  /** What this host is, looked at without vmpod's code. */
  let pvm: boolean;
  let kvmDevice: boolean;
  let hybrid: boolean;

  before(async () => {
    image = await guestImage();
    root = await mkdtemp(join(tmpdir(), "vmpod-cli-"));
    configPath = join(root, "configuration.toml");
    pvm = await exists("/sys/module/kvm_pvm");
    kvmDevice = await exists("/dev/kvm");
    hybrid = !(await exists("/sys/fs/cgroup/cgroup.controllers")) && (await exists("/sys/fs/cgroup/unified"));
    await writeFile(configPath, configText({}));
  });

  after(async () => {
    await rm(root, { recursive: true, force: true });
    assert.deepEqual(await processesMentioning(root), [], "no process left");
    assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(root)), [], "no mount left");
    assert.equal(await exists(root), false);
  });

  function configText(extra: { machine?: string; vcpus?: number; logLevel?: string; kernel?: string }): string {
    return `[hypervisor.qemu]
path = "${QEMU}"
kernel = "${extra.kernel ?? image.vmlinux ?? image.kernel}"
initrd = "${image.initrd}"
image = "${image.rootImage}"
machine_type = "${extra.machine ?? "microvm"}"
default_vcpus = ${extra.vcpus ?? 1}
default_memory = 384
[runtime]
state_root = "${join(root, "state")}"
log_level = "${extra.logLevel ?? "info"}"
[cri]
socket = "${join(root, "vmpod.sock")}"
[image]
root = "${join(root, "images")}"
[cni]
conf_dir = "${join(root, "net.d")}"
cache_dir = "${join(root, "cni")}"
[metrics]
enable = false
`;
  }

  it("check reports this host's real state", async () => {
    const loaded = await loadConfigFile(configPath, image.dir);
    const lines = await runChecks(loaded, hostProbe());
    const line = (what: string) => lines.filter((l) => l.what === what);
    const qemuVersion = execFileSync(QEMU, ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
    assert.deepEqual(line("qemu"), [{ verdict: "ok", what: "qemu", detail: `${QEMU}: ${qemuVersion}` }]);
    for (const what of ["guest kernel", "guest initrd", "guest root image"]) assert.equal(line(what)[0]?.verdict, "ok", what);
    if (pvm) {
      assert.equal(line("/dev/kvm")[0]?.detail, "present, provided by kvm_pvm (nested virtualization by shadow paging)");
      assert.equal(line("acceleration")[0]?.verdict, "warn");
      assert.match(line("acceleration")[0]?.detail ?? "", /^TCG will be used, not KVM; VMs run, far slower\. Reason: kvm_pvm provides \/dev\/kvm/);
    } else if (!kvmDevice) {
      assert.equal(line("acceleration")[0]?.verdict, "warn");
    } else {
      process.stdout.write(`      NOTE: /dev/kvm without kvm_pvm here: acceleration says ${JSON.stringify(line("acceleration")[0])}\n`);
    }
    assert.equal(line("/dev/net/tun")[0]?.verdict, (await exists("/dev/net/tun")) ? "ok" : "fail");
    assert.equal(line("vhost-vsock")[0]?.detail.startsWith((await exists("/dev/vhost-vsock")) ? "present" : "absent"), true);
    assert.equal(line("virtiofsd")[0]?.verdict, "ok");
    assert.equal(line("cni")[0]?.verdict, "warn", "the test's conf_dir is empty");
    assert.equal(line("cgroups")[0]?.detail.startsWith(`cgroup ${hybrid ? "hybrid" : ""}`), true, line("cgroups")[0]?.detail);
    assert.equal(line("state root")[0]?.verdict, "ok");
    assert.match(line("state root")[0]?.detail ?? "", new RegExp(`\\(on ${root}\\)`), "measured on the nearest existing directory");

    const run = await runVmpod(["check", "--config", configPath]);
    const failed = run.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
    assert.equal(run.code, failed.length === 0 ? 0 : 1, run.stdout);
    assert.deepEqual(failed, [], "this host can run VM pods");
    assert.match(run.stdout, /\nthis host can run VM pods \(\d+ warnings?\)\n$/);
    assert.equal(await exists(join(root, "state")), false, "check makes nothing");
  });

  it("check and serve refuse a missing kernel, naming the key, the file and the line", async () => {
    const bad = join(root, "bad.toml");
    await writeFile(bad, configText({ kernel: join(root, "no-such-vmlinux") }));
    const check = await runVmpod(["check", "--config", bad]);
    assert.equal(check.code, 1);
    assert.match(check.stdout, new RegExp(`^FAIL  file: ${bad}:3: hypervisor\\.qemu\\.kernel: guest kernel ${root}/no-such-vmlinux is not found \\(needed by the vm handler vmpod\\)$`, "m"));
    assert.match(check.stdout, /\nthis host cannot run VM pods: 1 problem\n$/);
    const serve = await runVmpod(["serve", "--config", bad]);
    assert.equal(serve.code, 1);
    assert.match(serve.stderr, new RegExp(`"level":"error","msg":"${bad}:3: hypervisor\\.qemu\\.kernel: guest kernel`));
    assert.equal(await exists(join(root, "vmpod.sock")), false, "nothing started");
    const syntax = join(root, "syntax.toml");
    await writeFile(syntax, "[runtime]\nlog_level = info\n");
    const broken = await runVmpod(["check", "--config", syntax]);
    assert.equal(broken.code, 1);
    assert.match(broken.stdout, new RegExp(`^FAIL  configuration: ${syntax}:2:\\d+: not valid TOML`, "m"));
  });

  it("env prints TOML that reflects the configuration and the host", async () => {
    const q35 = join(root, "q35.toml");
    await writeFile(q35, configText({ machine: "q35" }));
    const run = await runVmpod(["env"], { ...process.env, VMPOD_CONFIG: q35 });
    assert.equal(run.code, 0, run.stderr);
    const doc = JSON.parse(JSON.stringify(parse(run.stdout))) as Record<string, Record<string, unknown>>;
    assert.equal(doc.runtime?.config_path, q35);
    assert.equal(doc.runtime?.config_origin, "VMPOD_CONFIG");
    assert.equal(doc.runtime?.version, (JSON.parse(execFileSync("cat", [join(REPO, "package.json")], { encoding: "utf8" })) as { version: string }).version);
    assert.equal(doc.hypervisor?.machine_type, "q35");
    assert.equal(doc.hypervisor?.default_memory, 384);
    assert.equal(doc.hypervisor?.version, execFileSync(QEMU, ["--version"], { encoding: "utf8" }).split("\n")[0]);
    if (pvm) {
      assert.equal(doc.hypervisor?.accel, "tcg");
      assert.match(String(doc.hypervisor?.accel_reason), /kvm_pvm/);
    }
    assert.deepEqual(doc.initrd, { path: image.initrd, present: true, size: (await import("node:fs")).statSync(image.initrd).size, sha256: await sha256File(image.initrd) });
    assert.equal(doc.guest_build?.hash, image.hash);
    assert.equal(doc.network?.conf_dir, join(root, "net.d"));
    assert.equal(doc.host?.kernel, release());
    assert.equal(doc.host?.architecture, execFileSync("uname", ["-m"], { encoding: "utf8" }).trim());
    if (hybrid) assert.equal(doc.host?.cgroup_version, "hybrid");
    assert.match(String(doc.host?.cpu_model), /\S/);
  });

  it("config paths lists the places in order and marks the one in force", async () => {
    const env = { ...process.env };
    delete env.VMPOD_CONFIG;
    const run = await runVmpod(["config", "paths", "--config", configPath], env);
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.match(lines[0] ?? "", new RegExp(`^\\* --config +${configPath} +exists, in force$`));
    assert.match(lines[1] ?? "", /^ {2}VMPOD_CONFIG +- +not set$/);
    assert.match(lines[2] ?? "", /^ {2}system +\/etc\/vmpod\/configuration\.toml +(missing|exists)$/);
    assert.match(lines[3] ?? "", new RegExp(`^ {2}packaged +${join(REPO, "config/configuration.toml")} +exists$`));
    const missing = await runVmpod(["config", "paths", "--config", join(root, "nope.toml")], env);
    assert.equal(missing.code, 1);
    assert.match(missing.stdout, /^error: --config names .*nope\.toml, which does not exist$/m);
  });

  it("serve reloads on SIGHUP: the log level at once, the rest named for a restart", async () => {
    const daemonConfig = join(root, "daemon.toml");
    await writeFile(daemonConfig, configText({}));
    const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "src/main.ts"), "serve", "--config", daemonConfig], { cwd: REPO, stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr.on("data", (b: Buffer) => (log += b.toString()));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    const client = createCriClient(join(root, "vmpod.sock"));
    try {
      await client.waitForReady(60_000);
      const until = async (pattern: RegExp) => {
        for (let i = 0; i < 200 && !pattern.test(log); i++) await new Promise((r) => setTimeout(r, 50));
        assert.match(log, pattern);
      };
      // Version is a polled call, logged at debug level: hidden at "info".
      await client.runtime.version({});
      await new Promise((r) => setTimeout(r, 200));
      assert.doesNotMatch(log, /"msg":"cri call"/);
      await writeFile(daemonConfig, configText({ logLevel: "debug", vcpus: 2, machine: "q35" }));
      child.kill("SIGHUP");
      await until(/"msg":"configuration reloaded"/);
      const records = log.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);
      const warning = records.filter((r) => typeof r.msg === "string" && r.msg.startsWith("reload:"));
      assert.deepEqual(warning.map((r) => [r.level, r.msg]), [["warn", "reload: changed keys that take effect only after a restart: hypervisor.qemu.machine_type, hypervisor.qemu.default_vcpus"]]);
      assert.deepEqual(records.find((r) => r.msg === "configuration reloaded")?.applied, ["runtime.log_level"]);
      await client.runtime.version({});
      await until(/"level":"debug","msg":"cri call"/);
    } finally {
      client.close();
      child.kill("SIGTERM");
    }
    assert.equal(await exited, 0, log);
    assert.deepEqual(await processesMentioning(root), []);
  });
});
