import assert from "node:assert/strict";
import { parseConfig } from "../../../src/config/load.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { VmpodError } from "../../../src/common/errors.js";

describe("configuration.toml", () => {
  it("gives every key its default from an empty file", () => {
    const { config, warnings, source } = parseConfig("", "c.toml", "/assets");
    assert.deepEqual(config, defaultConfig("/assets"));
    assert.equal(source, "c.toml");
    assert.deepEqual(warnings, []);
  });

  it("reads Kata's section and key names", () => {
    const { config } = parseConfig(
      `[hypervisor.qemu]
path = "/opt/qemu"
machine_type = "q35"
default_vcpus = 2
default_memory = 512
kernel_params = "quiet debug"
accel = "tcg"
[agent.kata]
dial_timeout = 30
`,
      "c.toml",
      "/a",
    );
    assert.equal(config.hypervisor.path, "/opt/qemu");
    assert.equal(config.hypervisor.machineType, "q35");
    assert.equal(config.hypervisor.defaultVcpus, 2);
    assert.equal(config.hypervisor.defaultMemory, 512);
    assert.deepEqual(config.hypervisor.kernelParams, ["quiet", "debug"]);
    assert.equal(config.hypervisor.accel, "tcg");
    assert.equal(config.agent.dialTimeoutMs, 30_000);
  });

  it("names the file and key of a wrong type or impossible value", () => {
    const check = (text: string, pattern: RegExp) =>
      assert.throws(() => parseConfig(text, "/etc/vmpod/c.toml", "/a"), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message));
    check(`[hypervisor.qemu]\ndefault_vcpus = 0`, /^\/etc\/vmpod\/c\.toml:2: hypervisor\.qemu\.default_vcpus = 0 is out of range/);
    check(`[hypervisor.qemu]\ndefault_memory = "lots"`, /hypervisor\.qemu\.default_memory must be an integer/);
    check(`[hypervisor.qemu]\nmachine_type = "pc"`, /machine_type must be one of microvm, q35/);
    check(`[hypervisor.qemu\n`, /^\/etc\/vmpod\/c\.toml:1:\d+: not valid TOML/);
  });

  it("reports unknown keys as warnings", () => {
    const { warnings } = parseConfig(`[hypervisor.qemu]\nmachine_typo = "q35"\n[nonsense]\nx = 1`, "c.toml", "/a");
    assert.deepEqual(warnings, ["c.toml:2: unknown key hypervisor.qemu.machine_typo", "c.toml:4: unknown key nonsense.x"]);
  });

  it("reads the image store, block layers and per-registry settings", () => {
    const { config, warnings } = parseConfig(
      `[hypervisor.qemu]
disable_block_device_use = false
block_device_driver = "virtio-scsi"
[image]
root = "/srv/images"
platform = "linux/arm64/v8"
max_concurrent_downloads = 6
sandbox_image = "127.0.0.1:5000/pause:1"
[registries."docker.io"]
mirrors = ["https://mirror.example:5000", "http://127.0.0.1:5001"]
[registries."127.0.0.1:5000"]
plain_http = false
insecure_skip_verify = true
ca_files = ["/etc/ssl/local.pem"]
mirror = "typo"
`,
      "c.toml",
      "/a",
    );
    assert.equal(config.hypervisor.disableBlockDeviceUse, false);
    assert.equal(config.image.root, "/srv/images");
    assert.equal(config.image.platform, "linux/arm64/v8");
    assert.equal(config.image.maxConcurrentDownloads, 6);
    assert.equal(config.image.sandboxImage, "127.0.0.1:5000/pause:1");
    assert.deepEqual(config.image.registries["docker.io"], { mirrors: ["https://mirror.example:5000", "http://127.0.0.1:5001"], insecureSkipVerify: false, caFiles: [] });
    assert.deepEqual(config.image.registries["127.0.0.1:5000"], { mirrors: [], plainHttp: false, insecureSkipVerify: true, caFiles: ["/etc/ssl/local.pem"] });
    assert.deepEqual(warnings, ['c.toml:15: unknown key registries."127.0.0.1:5000".mirror']);
  });

  it("refuses bad image and registry settings, naming the key", () => {
    const check = (text: string, pattern: RegExp) =>
      assert.throws(() => parseConfig(text, "c.toml", "/a"), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message));
    check(`[image]
platform = "amd64"`, /image\.platform must be os\/architecture/);
    check(`[image]
max_concurrent_downloads = 0`, /max_concurrent_downloads = 0 is out of range/);
    check(`[registries."docker.io"]
mirrors = ["ftp://x"]`, /registries\."docker\.io"\.mirrors must be http/);
    check(`[registries."docker.io"]
plain_http = "yes"`, /plain_http must be true or false/);
    check(`[registries."bad host"]
mirrors = []`, /is not a registry host/);
    check(`[hypervisor.qemu]
disable_block_device_use = false
block_device_driver = "virtio-blk"`, /virtio-blk.*virtio-scsi/);
  });

  it("reads runtime handlers and the CRI server's addresses", () => {
    const { config } = parseConfig(
      `[runtime]
default_handler = "kata"
[runtime.handlers.kata]
type = "vm"
[runtime.handlers.crun]
type = "oci"
runtime_path = "/usr/bin/crun"
[cri]
socket = "/run/x.sock"
stream_address = "127.0.0.1:10010"
stream_token_ttl = 30
`,
      "c.toml",
      "/a",
    );
    assert.equal(config.runtime.defaultHandler, "kata");
    assert.deepEqual(config.runtime.handlers, { kata: { type: "vm" }, crun: { type: "oci", runtimePath: "/usr/bin/crun" } });
    assert.deepEqual(config.cri, { socket: "/run/x.sock", streamAddress: "127.0.0.1:10010", streamTokenTtlMs: 30_000 });
    const check = (text: string, pattern: RegExp) =>
      assert.throws(() => parseConfig(text, "c.toml", "/a"), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message));
    check(`[runtime]\ndefault_handler = "nope"`, /default_handler = "nope" is not among runtime.handlers/);
    check(`[runtime.handlers.x]\ntype = "oci"`, /runtime_path must be/);
    check(`[runtime.handlers.Bad_Name]\ntype = "vm"`, /DNS label/);
    check(`[cri]\nstream_address = "localhost"`, /host:port/);
  });

  it("reads the [cni] section and Kata's internetworking_model", () => {
    const { config, warnings } = parseConfig(
      `[runtime]
internetworking_model = "macvtap"
[cni]
conf_dir = "/etc/vmpod/net.d"
bin_dirs = ["/usr/libexec/cni"]
cache_dir = "/var/lib/vmpod/net"
plugin_timeout = 5
plugin_dir = "typo"
`,
      "c.toml",
      "/a",
    );
    assert.deepEqual(config.network, {
      confDir: "/etc/vmpod/net.d",
      binDirs: ["/usr/libexec/cni"],
      cacheDir: "/var/lib/vmpod/net",
      pluginTimeoutMs: 5_000,
      interNetworkingModel: "macvtap",
    });
    assert.deepEqual(warnings, ["c.toml:8: unknown key cni.plugin_dir"]);
    assert.deepEqual(parseConfig("", "c.toml", "/a").config.network, {
      confDir: "/etc/cni/net.d",
      binDirs: ["/opt/cni/bin", "/usr/lib/cni"],
      cacheDir: "/var/lib/vmpod/cni",
      pluginTimeoutMs: 30_000,
      interNetworkingModel: "tcfilter",
    });
  });

  it("refuses bad [cni] values, naming the file and key", () => {
    const check = (text: string, pattern: RegExp) =>
      assert.throws(() => parseConfig(text, "/etc/vmpod/c.toml", "/a"), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message));
    check(`[cni]\nbin_dirs = "/opt/cni/bin"`, /\/etc\/vmpod\/c\.toml:2: cni\.bin_dirs must be a non-empty array of absolute paths/);
    check(`[cni]\nbin_dirs = []`, /cni\.bin_dirs must be a non-empty array/);
    check(`[cni]\nbin_dirs = ["relative/bin"]`, /cni\.bin_dirs must be a non-empty array of absolute paths/);
    check(`[cni]\nplugin_timeout = 0`, /\/etc\/vmpod\/c\.toml:2: cni\.plugin_timeout = 0 is out of range/);
    check(`[cni]\nconf_dir = ""`, /cni\.conf_dir must be a non-empty string/);
    check(`[runtime]\ninternetworking_model = "bridged"`, /runtime\.internetworking_model must be one of tcfilter, macvtap/);
  });

  it("reads the metrics endpoint and debug switch, and refuses a bad address", () => {
    const { config } = parseConfig(`[runtime]\nenable_debug = true\n[metrics]\nenable = false\naddress = "0.0.0.0:9100"`, "c.toml", "/a");
    assert.equal(config.runtime.enableDebug, true);
    assert.deepEqual(config.metrics, { enable: false, address: "0.0.0.0:9100" });
    assert.throws(
      () => parseConfig(`[metrics]\naddress = "9100"`, "c.toml", "/a"),
      (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && /metrics\.address must be host:port/.test(err.message),
    );
  });
});
