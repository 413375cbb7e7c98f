/**
 * The systemd unit and kubelet's drop-in, read as unit files: the keys the
 * daemon's life depends on (how it starts, restarts, is stopped without its
 * pod VMs, where its state lives), kubelet's flags, and that they agree with
 * the daemon's defaults and the installer's layout; then, where systemd's
 * own checker is installed, that systemd finds nothing wrong in them.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { findRepoRoot } from "../../../src/common/fs.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { HOST_PATHS, INSTALLED_NODE } from "../../../src/installer/layout.js";
import { parseIni, value, values } from "./ini.js";

const SOCKET = "unix:///run/vmpod/vmpod.sock";

async function systemdAnalyze(): Promise<string | undefined> {
  for (const dir of ["/usr/bin", "/bin"]) {
    const path = join(dir, "systemd-analyze");
    if (await readFile(path).then(() => true, () => false)) return path;
  }
  return undefined;
}

/** What `systemd-analyze verify` says of a unit (it exits 0 on warnings; they are on stderr). */
async function verify(unit: string, unitPath: string): Promise<string> {
  const analyze = await systemdAnalyze();
  if (!analyze) throw new Error("no systemd-analyze");
  const r = await promisify(execFile)(analyze, ["verify", unit], { env: { ...process.env, SYSTEMD_UNIT_PATH: `${unitPath}:`, SYSTEMD_LOG_COLOR: "0" } }).catch((e: { stderr?: string; message: string }) => ({ stderr: e.stderr ?? e.message }));
  return r.stderr.trim();
}

describe("deploy: systemd unit and kubelet drop-in", () => {
  let repo: string;
  let unitText: string;
  let dropInText: string;

  before(async () => {
    repo = await findRepoRoot(import.meta.dirname);
    unitText = await readFile(join(repo, "deploy/systemd/vmpod.service"), "utf8");
    dropInText = await readFile(join(repo, "deploy/kubelet/10-vmpod.conf"), "utf8");
  });

  it("vmpod.service starts the installed daemon, restarts it always, and stops it without its pod VMs", () => {
    const unit = parseIni(unitText);
    assert.equal(value(unit, "Service", "ExecStart"), `${HOST_PATHS.installDir}/${INSTALLED_NODE} ${HOST_PATHS.installDir}/dist/src/main.js serve`);
    assert.equal(value(unit, "Service", "Restart"), "always");
    assert.equal(value(unit, "Service", "KillMode"), "process", "QEMU and virtiofsd stay in the unit's cgroup; any other kill mode ends them");
    assert.equal(value(unit, "Service", "Delegate"), "yes");
    assert.ok(Number(value(unit, "Service", "LimitNOFILE")) >= 65536);
    assert.equal(values(unit, "Service", "OOMScoreAdjust").length, 0, "QEMU would inherit it");
    assert.match(value(unit, "Unit", "After"), /\bnetwork-online\.target\b/);
    assert.match(value(unit, "Unit", "Wants"), /\bnetwork-online\.target\b/);
    assert.match(value(unit, "Unit", "Before"), /\bkubelet\.service\b/);
    assert.equal(value(unit, "Install", "WantedBy"), "multi-user.target");
  });

  it("vmpod.service keeps /run/vmpod across stops and restarts, and its directories are the daemon's defaults", () => {
    const unit = parseIni(unitText);
    const config = defaultConfig("/opt/vmpod/guest/out/current");
    assert.equal(`/run/${value(unit, "Service", "RuntimeDirectory")}`, config.runtime.stateRoot);
    assert.equal(value(unit, "Service", "RuntimeDirectoryPreserve"), "yes", "pod VMs keep their state there while the daemon is stopped");
    assert.equal(`/run/${value(unit, "Service", "RuntimeDirectory")}/vmpod.sock`, config.cri.socket);
    const stateDir = `/var/lib/${value(unit, "Service", "StateDirectory")}`;
    assert.equal(stateDir, HOST_PATHS.stateDir);
    assert.ok(config.image.root.startsWith(stateDir + "/") && config.network.cacheDir.startsWith(stateDir + "/"));
    assert.equal(`/etc/${value(unit, "Service", "ConfigurationDirectory")}/configuration.toml`, HOST_PATHS.config);
  });

  it("the kubelet drop-in replaces kubelet's command line with vmpod's endpoint and cgroup driver last, and orders kubelet after vmpod", () => {
    const dropIn = parseIni(dropInText);
    assert.deepEqual(dropIn.get("Service")?.get("ExecStart")?.[0], "", "ExecStart= first resets the command line kubeadm's drop-in set");
    const exec = value(dropIn, "Service", "ExecStart");
    assert.match(exec, /^\/usr\/bin\/kubelet /);
    for (const v of ["$KUBELET_KUBECONFIG_ARGS", "$KUBELET_CONFIG_ARGS", "$KUBELET_KUBEADM_ARGS", "$KUBELET_EXTRA_ARGS"]) assert.ok(exec.includes(v), `kubeadm's ${v} is kept`);
    assert.ok(exec.trimEnd().endsWith("$KUBELET_VMPOD_ARGS"), "vmpod's flags come last and win");
    const env = value(dropIn, "Service", "Environment");
    const flags = /^"KUBELET_VMPOD_ARGS=(.*)"$/.exec(env)?.[1]?.split(" ") ?? [];
    assert.ok(flags.includes(`--container-runtime-endpoint=${SOCKET}`), env);
    assert.ok(flags.includes("--cgroup-driver=cgroupfs"), env);
    assert.equal(value(dropIn, "Unit", "After"), "vmpod.service");
    assert.equal(value(dropIn, "Unit", "Wants"), "vmpod.service");
  });

  it("systemd-analyze verify finds nothing wrong in either", async function () {
    if (!(await systemdAnalyze())) {
      process.stdout.write("      (skipped: systemd-analyze is not installed here)\n");
      this.skip();
    }
    const dir = await mkdtemp(join(tmpdir(), "vmpod-units-"));
    try {
      // The installed binaries do not exist here; systemd checks that they do.
      await writeFile(join(dir, "vmpod.service"), unitText.replaceAll(`${HOST_PATHS.installDir}/${INSTALLED_NODE}`, process.execPath));
      assert.equal(await verify(join(dir, "vmpod.service"), dir), "");
      await mkdir(join(dir, "kubelet.service.d"));
      await writeFile(join(dir, "kubelet.service"), "[Unit]\nDescription=kubelet\n[Service]\nExecStart=/usr/bin/kubelet\n");
      await writeFile(join(dir, "kubelet.service.d/10-vmpod.conf"), dropInText.replaceAll("/usr/bin/kubelet", process.execPath));
      assert.equal(await verify(join(dir, "kubelet.service"), dir), "");
      // The checker does look at the drop-in: a bad key there is reported.
      await writeFile(join(dir, "kubelet.service.d/10-vmpod.conf"), dropInText.replaceAll("/usr/bin/kubelet", process.execPath) + "NoSuchKey=1\n");
      assert.match(await verify(join(dir, "kubelet.service"), dir), /Unknown key 'NoSuchKey'/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
