import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { collectEnv, type EnvFacts } from "../../../src/cli/env.js";
import { ENV_FORMAT_VERSION, renderEnv } from "../../../src/cli/env-render.js";
import type { ConfigChoice } from "../../../src/config/discovery.js";
import { parseConfig } from "../../../src/config/load.js";
import { GUEST, goodHost, probeOf, QEMU } from "./fake-host.js";

const CHOICE: ConfigChoice = {
  candidates: [
    { origin: "--config", path: "/etc/vmpod/test.toml", exists: true },
    { origin: "VMPOD_CONFIG", path: undefined, exists: false },
    { origin: "system", path: "/etc/vmpod/configuration.toml", exists: false },
    { origin: "packaged", path: "/opt/vmpod/config/configuration.toml", exists: true },
  ],
  get inForce() {
    return this.candidates[0];
  },
};

type Doc = Record<string, Record<string, unknown>>;

/** The TOML text as plain objects (the parser makes them without a prototype). */
const read = (text: string) => JSON.parse(JSON.stringify(parse(text))) as Doc;

describe("vmpod env", () => {
  it("collects what the configuration resolves to on the host, and renders it as TOML", async () => {
    const host = goodHost();
    host.kvm = { present: true, usable: true, pvm: true };
    host.texts.set(`${GUEST}/manifest.json`, JSON.stringify({ hash: "818e72", kernelVersion: "6.1.0-56-cloud-amd64", nodeVersion: "v20.20.2", crunVersion: "1.8.1", builtAt: "2026-11-23T13:28:54.803Z" }));
    host.cni = { plugins: [], missingPlugins: [], pluginBinaries: 11 };
    const loaded = parseConfig('[hypervisor.qemu]\nmachine_type = "q35"\nkernel_params = "debug"\n[runtime]\nlog_levl = "x"\n', "/etc/vmpod/test.toml", GUEST);
    const facts = await collectEnv({ loaded, choice: CHOICE, vmpodVersion: "0.1.0" }, probeOf(host));
    const doc = read(renderEnv(facts));
    assert.deepEqual(doc.meta, { format_version: ENV_FORMAT_VERSION });
    assert.equal(doc.runtime?.version, "0.1.0");
    assert.equal(doc.runtime?.config_path, "/etc/vmpod/test.toml");
    assert.equal(doc.runtime?.config_origin, "--config");
    assert.deepEqual(doc.runtime?.config_warnings, ["/etc/vmpod/test.toml:5: unknown key runtime.log_levl"]);
    assert.deepEqual(doc.runtime?.handlers, { vmpod: { type: "vm" }, runc: { type: "oci", runtime_path: "/usr/bin/runc", present: true } });
    assert.equal(doc.hypervisor?.path, QEMU);
    assert.equal(doc.hypervisor?.version, "QEMU emulator version 7.2.22");
    assert.equal(doc.hypervisor?.machine_type, "q35");
    assert.equal(doc.hypervisor?.accel_requested, "auto");
    assert.equal(doc.hypervisor?.accel, "tcg");
    assert.match(String(doc.hypervisor?.accel_reason), /kvm_pvm/);
    assert.deepEqual(doc.hypervisor?.kvm, { device_present: true, device_usable: true, kvm_pvm: true });
    assert.deepEqual(doc.hypervisor?.kernel_params, ["debug"]);
    assert.ok((doc.hypervisor?.base_kernel_params as string[]).includes("console=ttyS0"));
    assert.equal(doc.hypervisor?.virtio_fs_daemon_version, "virtiofsd version 7.2.22");
    assert.deepEqual(doc.kernel, { path: `${GUEST}/vmlinux`, present: true, size: 1024 * 1024, sha256: `sha256-of-${GUEST}/vmlinux` });
    assert.deepEqual(doc.image, { path: `${GUEST}/root.erofs`, present: true, size: 3 * 1024 * 1024, sha256: `sha256-of-${GUEST}/root.erofs` });
    assert.deepEqual(doc.guest_build, { hash: "818e72", kernel_version: "6.1.0-56-cloud-amd64", node_version: "v20.20.2", crun_version: "1.8.1", built_at: "2026-11-23T13:28:54.803Z" });
    assert.match(String(doc.agent?.version), /^\d+\.\d+\.\d+$/);
    assert.equal(doc.agent?.transport, "virtio-serial");
    assert.equal(doc.agent?.dial_timeout, 90);
    assert.equal(doc.network?.conflist, undefined, "no configuration: the key is left out");
    assert.equal(doc.network?.plugin_binaries, 11);
    assert.deepEqual(doc.network?.bin_dirs, ["/opt/cni/bin", "/usr/lib/cni"]);
    assert.deepEqual(doc.host, {
      kernel: "6.1.0-13-amd64",
      architecture: "x86_64",
      cpu_model: "Test CPU",
      cpus: 4,
      memory_mib: 8192,
      root: true,
      cgroup_version: "v2",
      cgroup_controllers: ["cpuset", "cpu", "io", "memory", "pids"],
    });
  });

  it("says what is missing rather than failing: no QEMU, no guest files, kvm required but absent", async () => {
    const host = goodHost();
    host.files.clear();
    host.versions.clear();
    host.sizes.clear();
    host.kvm = { present: false, usable: false, pvm: false };
    const loaded = parseConfig('[hypervisor.qemu]\naccel = "kvm"', "c.toml", GUEST);
    const facts = await collectEnv({ loaded, choice: CHOICE, vmpodVersion: "0.1.0", digests: false }, probeOf(host));
    const doc = read(renderEnv(facts));
    assert.match(String(doc.hypervisor?.version), /^unavailable: /);
    assert.equal(doc.hypervisor?.accel, "none");
    assert.match(String(doc.hypervisor?.accel_reason), /kvm requested/);
    assert.equal(doc.hypervisor?.virtio_fs_daemon_version, undefined);
    assert.deepEqual(doc.kernel, { path: `${GUEST}/vmlinux`, present: false });
    assert.equal(doc.guest_build, undefined);
    assert.deepEqual((doc.runtime?.handlers as Record<string, unknown>).runc, { type: "oci", runtime_path: "/usr/bin/runc", present: false });
  });

  it("renders fixed facts to the same document every time, quoting what TOML needs quoted", () => {
    const facts: EnvFacts = {
      vmpodVersion: "1.2.3",
      config: { origin: "built-in defaults", warnings: [] },
      runtime: { stateRoot: "/run/vmpod", logLevel: "info", debug: false, defaultHandler: "kata-qemu", handlers: { "kata-qemu": { type: "vm" } }, criSocket: "/run/vmpod/vmpod.sock", streamAddress: "127.0.0.1:0" },
      hypervisor: {
        path: "/opt/q",
        version: 'QEMU "7.2"\nsecond line',
        machineType: "microvm",
        accelRequested: "tcg",
        accel: "tcg",
        accelReason: "tcg requested by configuration",
        kvm: { present: false, usable: false, pvm: false },
        defaultVcpus: 1,
        defaultMemoryMiB: 256,
        baseKernelParams: ["console=ttyS0"],
        kernelParams: [],
        sharedFs: "none",
        virtioFsDaemon: "/usr/lib/qemu/virtiofsd",
        blockDeviceDriver: "virtio-scsi",
        disableBlockDeviceUse: true,
      },
      kernel: { path: "/k", present: false },
      initrd: { path: "/i", present: false },
      image: { path: "/r", present: false },
      agent: { version: "0.1.0", transport: "virtio-serial", dialTimeoutSeconds: 90, callTimeoutSeconds: 30 },
      network: { confDir: "/etc/cni/net.d", binDirs: ["/usr/lib/cni"], cacheDir: "/var/lib/vmpod/cni", interNetworkingModel: "tcfilter", cni: { plugins: [], missingPlugins: [], pluginBinaries: 0 } },
      imageStore: { root: "/var/lib/vmpod/image", platform: "linux/amd64", sandboxImage: "registry.k8s.io/pause:3.10" },
      metrics: { enable: false, address: "127.0.0.1:8090" },
      factory: { enableTemplate: true, inUse: false, reason: 'machine_type = "microvm": needs q35', templatePath: "/var/lib/vmpod/templates", vmCacheNumber: 0, templates: 0 },
      host: { kernel: "6.1", architecture: "x86_64", cpuModel: "CPU", cpus: 2, memoryBytes: 2 * 1024 ** 3, isRoot: true, cgroups: { version: "hybrid", controllers: [] } },
    };
    const text = renderEnv(facts);
    assert.equal(renderEnv(facts), text);
    assert.match(text, /^# vmpod env/);
    assert.match(text, /^\[runtime\.handlers\.kata-qemu\]$/m);
    const doc = read(text);
    assert.equal(doc.hypervisor?.version, 'QEMU "7.2"\nsecond line');
    assert.equal(doc.runtime?.config_path, undefined);
    assert.equal(doc.runtime?.config_origin, "built-in defaults");
    assert.deepEqual(doc.metrics, { enable: false, address: "127.0.0.1:8090" });
    assert.equal(doc.host?.memory_mib, 2048);
    assert.deepEqual(doc.factory, { enable_template: true, in_use: false, reason: 'machine_type = "microvm": needs q35', template_path: "/var/lib/vmpod/templates", vm_cache_number: 0, templates: 0 });
  });
});
