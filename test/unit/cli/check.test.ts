import assert from "node:assert/strict";
import { MIN_FREE_BYTES, renderCheck, runChecks, type CheckLine } from "../../../src/cli/check.js";
import { builtInConfig, parseConfig } from "../../../src/config/load.js";
import { GIB, GUEST, goodHost, probeOf, QEMU, RUNC, VIRTIOFSD, type FakeHost } from "./fake-host.js";

const verdictOf = (lines: readonly CheckLine[], what: string) => lines.filter((l) => l.what === what).map((l) => l.verdict);
const failures = (lines: readonly CheckLine[]) => lines.filter((l) => l.verdict === "fail");

describe("vmpod check", () => {
  it("passes a capable KVM host with nothing to warn about", async () => {
    const lines = await runChecks(builtInConfig(GUEST), probeOf(goodHost()));
    assert.deepEqual(failures(lines), []);
    assert.deepEqual(lines.filter((l) => l.verdict === "warn"), []);
    assert.deepEqual(verdictOf(lines, "acceleration"), ["ok"]);
    assert.deepEqual(verdictOf(lines, "qemu"), ["ok"]);
    assert.deepEqual(verdictOf(lines, "handler runc"), ["ok"]);
    const report = renderCheck(lines);
    assert.equal(report.exitCode, 0);
    assert.match(report.text, /^ok {4}qemu: \/usr\/bin\/qemu-system-x86_64: QEMU emulator version 7\.2\.22$/m);
    assert.match(report.text, /^ok {4}guest kernel: \/g\/vmlinux \(1\.0 MiB\)$/m);
    assert.match(report.text, /^info {2}vhost-vsock: absent; not needed/m);
    assert.match(report.text, /\nthis host can run VM pods\n$/);
  });

  it("on a kvm_pvm host without a CNI configuration: TCG and no network are warnings, not failures", async () => {
    const host = goodHost();
    host.kvm = { present: true, usable: true, pvm: true };
    host.cni = { plugins: [], missingPlugins: [], pluginBinaries: 11 };
    host.cgroups = { version: "hybrid", controllers: ["cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"] };
    const lines = await runChecks(builtInConfig(GUEST), probeOf(host));
    assert.deepEqual(failures(lines), []);
    assert.deepEqual(verdictOf(lines, "acceleration"), ["warn"]);
    assert.deepEqual(verdictOf(lines, "cni"), ["warn"]);
    const report = renderCheck(lines);
    assert.equal(report.exitCode, 0);
    assert.match(report.text, /^info {2}\/dev\/kvm: present, provided by kvm_pvm/m);
    assert.match(report.text, /^WARN {2}acceleration: TCG will be used, not KVM; VMs run, far slower\. Reason: kvm_pvm provides \/dev\/kvm/m);
    assert.match(report.text, /^WARN {2}cni: no network configuration in \/etc\/cni\/net\.d \(11 plugin binaries/m);
    assert.match(report.text, /^ok {4}cgroups: cgroup hybrid, controllers: /m);
    assert.match(report.text, /\nthis host can run VM pods \(2 warnings\)\n$/);
  });

  it("fails a bad host with one line per problem, naming keys and files", async () => {
    const host: FakeHost = goodHost();
    host.host = { ...host.host, isRoot: false, cpus: 1 };
    host.files.delete(QEMU);
    host.files.delete(`${GUEST}/root.erofs`);
    host.notExecutable.add(VIRTIOFSD);
    host.versions.delete(RUNC);
    host.kvm = { present: false, usable: false, pvm: false };
    host.devices.set("/dev/net/tun", { present: false, usable: false });
    host.cgroups = { version: "v1", controllers: ["cpu", "cpuacct", "memory", "devices"] };
    host.cni = { conflist: "/etc/cni/net.d/10-x.conflist", networkName: "x", plugins: ["bridge", "tuning"], missingPlugins: ["tuning"], pluginBinaries: 3 };
    host.freeBytes.set("/var/lib/vmpod/image", MIN_FREE_BYTES.imageRoot - 1);
    const loaded = parseConfig('[hypervisor.qemu]\naccel = "kvm"\ndefault_vcpus = 2\n', "/etc/vmpod/configuration.toml", GUEST);
    const lines = await runChecks(loaded, probeOf(host));
    const report = renderCheck(lines);
    assert.equal(report.exitCode, 1);
    const failed = report.text.split("\n").filter((l) => l.startsWith("FAIL"));
    assert.deepEqual(failed, [
      "FAIL  privileges: vmpod runs as root (network namespaces, mounts, taps, cgroups); this process is not root",
      "FAIL  file: /etc/vmpod/configuration.toml: hypervisor.qemu.path (default): QEMU binary /usr/bin/qemu-system-x86_64 is not found (needed by the vm handler vmpod)",
      "FAIL  file: /etc/vmpod/configuration.toml: hypervisor.qemu.image (default): guest root image /g/root.erofs is not found (needed by the vm handler vmpod)",
      'FAIL  file: /etc/vmpod/configuration.toml: hypervisor.qemu.virtio_fs_daemon (default): virtiofsd /usr/lib/qemu/virtiofsd is not executable (needed by shared_fs = "virtio-fs")',
      'FAIL  acceleration: hypervisor.qemu.accel = "kvm": kvm requested by configuration, but /dev/kvm does not exist',
      'FAIL  /dev/net/tun: absent: internetworking_model = "tcfilter" gives each VM a tap',
      "FAIL  handler runc: /usr/bin/runc does not run: /usr/bin/runc not found",
      "FAIL  cni: /etc/cni/net.d/10-x.conflist names plugins found in none of /opt/cni/bin, /usr/lib/cni: tuning",
      "FAIL  cgroups: cgroup v1, controllers: cpu cpuacct memory devices; missing pids, needed by the oci handlers runc",
      "FAIL  image root: image.root: /var/lib/vmpod/image has 1024.0 MiB free, less than the 1.0 GiB asked for",
    ]);
    assert.match(report.text, /^WARN {2}vcpus: hypervisor\.qemu\.default_vcpus = 2 is more than this host's 1 CPUs$/m);
    assert.deepEqual(verdictOf(lines, "qemu"), [], "a missing QEMU is not run");
    assert.match(report.text, /\nthis host cannot run VM pods: 10 problems\n$/);
  });

  it("does not ask for what the configuration does not use", async () => {
    const host = goodHost();
    host.files.delete(VIRTIOFSD);
    host.files.delete(QEMU);
    host.kvm = { present: false, usable: false, pvm: false };
    host.devices.clear();
    const ociOnly = parseConfig('[runtime]\ndefault_handler = "runc"\n[runtime.handlers.runc]\ntype = "oci"\nruntime_path = "/usr/bin/runc"', "c.toml", GUEST);
    const lines = await runChecks(ociOnly, probeOf(host));
    assert.deepEqual(failures(lines), []);
    assert.deepEqual(verdictOf(lines, "acceleration"), []);
    const tcg = await runChecks(parseConfig('[hypervisor.qemu]\naccel = "tcg"\nshared_fs = "none"\ninternetworking_model = "macvtap"', "c.toml", GUEST), probeOf(goodHost()));
    assert.deepEqual(verdictOf(tcg, "acceleration"), ["info"], "TCG asked for is no warning");
    assert.deepEqual(verdictOf(tcg, "virtiofsd"), ["info"]);
  });

  it("reports a CNI configuration that does not read, and too little room for state", async () => {
    const host = goodHost();
    host.cni = { conflist: "/etc/cni/net.d/00-bad.conf", error: "/etc/cni/net.d/00-bad.conf: not JSON: Unexpected token", plugins: [], missingPlugins: [], pluginBinaries: 0 };
    host.freeBytes.set("/run/vmpod", 10 * 1024 * 1024);
    host.freeBytes.set("/var/lib/vmpod/image", 2 * GIB);
    const lines = await runChecks(builtInConfig(GUEST), probeOf(host));
    assert.deepEqual(
      failures(lines).map((l) => `${l.what}: ${l.detail}`),
      ["cni: /etc/cni/net.d/00-bad.conf: not JSON: Unexpected token", "state root: runtime.state_root: /run/vmpod has 10.0 MiB free, less than the 64.0 MiB asked for"],
    );
    assert.deepEqual(verdictOf(lines, "cni"), ["fail", "warn"], "and no plugin binaries at all");
  });
});
