import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { createCni, versionAtLeast, type Cni } from "../../../src/network/cni.js";
import type { CniRuntimeConf } from "../../../src/network/cni-request.js";
import { FakeHost, FakePlugins, cniError } from "./fakes.js";

const ID = "c".repeat(64);
const NS = "/run/netns/vmpod-cccccccccccccccccccccccc";

describe("CNI runtime", () => {
  let root: string;
  let confDir: string;
  let cacheDir: string;
  let host: FakeHost;
  let plugins: FakePlugins;
  let cni: Cni;
  const rt: CniRuntimeConf = {
    containerId: ID,
    netnsPath: NS,
    ifName: "eth0",
    args: [
      ["IgnoreUnknown", "1"],
      ["K8S_POD_NAME", "web"],
    ],
    capabilityArgs: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] },
  };

  const writeConf = (version: string, extra: Record<string, unknown> = {}, name = "10-test.conflist") =>
    writeFile(join(confDir, name), JSON.stringify({ cniVersion: version, name: "testnet", ...extra, plugins: [{ type: "bridge", bridge: "vmpt0" }, { type: "portmap", capabilities: { portMappings: true } }] }));
  const make = () => createCni({ confDir, binDirs: ["/opt/cni/bin", "/usr/lib/cni"], cacheDir, pluginTimeoutMs: 1000, exec: plugins, logger: silentLogger });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-cni-"));
    confDir = join(root, "net.d");
    cacheDir = join(root, "cache");
    await mkdir(confDir);
    host = new FakeHost();
    await host.createNetns("vmpod-cccccccccccccccccccccccc");
    plugins = new FakePlugins(host);
    cni = make();
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("runs ADD through the chain, handing each plugin the result before it and its capabilities", async () => {
    await writeConf("1.0.0");
    const result = await cni.add(rt);
    assert.deepEqual(plugins.commands(), ["bridge ADD", "portmap ADD"]);
    const [bridge, portmap] = plugins.calls.filter((c) => c.command === "ADD");
    assert.deepEqual(bridge?.env, {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: ID,
      CNI_NETNS: NS,
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAME=web",
      CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
    });
    assert.equal(bridge?.conf.prevResult, undefined);
    assert.equal(bridge?.conf.runtimeConfig, undefined);
    assert.equal(bridge?.conf.name, "testnet");
    assert.deepEqual(portmap?.conf.runtimeConfig, { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] });
    assert.deepEqual((portmap?.conf.prevResult as { ips: unknown }).ips, [{ interface: 2, address: "10.251.0.2/24", gateway: "10.251.0.1" }]);
    assert.deepEqual(result.ips, [{ family: 4, interface: 2, address: "10.251.0.2/24", gateway: "10.251.0.1" }]);
    assert.deepEqual(plugins.rules.get(ID), [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }]);
    const cached = JSON.parse(await readFile(join(cacheDir, "results", `${ID}-eth0.json`), "utf8")) as { result: { ips: unknown[] } };
    assert.equal(cached.result.ips.length, 1);
  });

  it("asks each plugin with VERSION and refuses a network version a plugin does not speak, before any ADD", async () => {
    await writeConf("1.0.0");
    plugins.versions.set("portmap", ["0.3.1", "0.4.0"]);
    await assert.rejects(
      cni.add(rt),
      (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && /CNI plugin portmap \(\/opt\/cni\/bin\/portmap\) does not speak cniVersion 1\.0\.0 of .*10-test\.conflist \(it speaks 0\.3\.1, 0\.4\.0\)/.test(err.message),
    );
    assert.deepEqual(plugins.commands(), []);
    assert.equal(await cni.cached(ID, "eth0"), false);
    const status = await cni.status();
    assert.equal(status.ready, false);
    assert.match(status.message ?? "", /does not speak cniVersion 1\.0\.0/);
  });

  it("asks VERSION once per plugin binary", async () => {
    await writeConf("1.0.0");
    await cni.status();
    await cni.status();
    await cni.add(rt);
    assert.equal(plugins.calls.filter((c) => c.command === "VERSION").length, 2);
  });

  it("is not ready, with the reason, when the configuration or a plugin is missing", async () => {
    const empty = await cni.status();
    assert.equal(empty.ready, false);
    assert.match(empty.message ?? "", /no CNI network configuration .* in .*net\.d/);
    await writeFile(join(confDir, "10-x.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "x", plugins: [{ type: "bridge" }, { type: "flannel" }] }));
    const missing = await cni.status();
    assert.equal(missing.ready, false);
    assert.match(missing.message ?? "", /CNI plugin flannel of .*10-x\.conflist is not in \/opt\/cni\/bin, \/usr\/lib\/cni/);
    await writeConf("1.0.0", {}, "05-good.conflist");
    assert.deepEqual(await cni.status(), { ready: true });
  });

  it("turns a plugin's error object into an error naming the plugin, and keeps the cache for DEL", async () => {
    await writeConf("1.0.0");
    plugins.overrides.set("portmap ADD", () => cniError(11, "iptables is locked", "try later"));
    await assert.rejects(cni.add(rt), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable" && err.message === "CNI plugin portmap ADD: iptables is locked (try later) [CNI error 11]");
    assert.equal(await cni.cached(ID, "eth0"), true);
    assert.equal(plugins.addresses.size, 1);
    await cni.del(rt);
    assert.ok(plugins.isClean());
    assert.equal(await cni.cached(ID, "eth0"), false);
  });

  it("runs DEL in reverse with the cached result and the configuration ADD ran with, even after a restart and a configuration change", async () => {
    await writeConf("1.0.0");
    const added = await cni.add(rt);
    // The operator changes the configuration; the daemon restarts.
    await writeConf("1.0.0", { name: "othernet" }, "01-new.conflist");
    cni = make();
    plugins.calls.length = 0;
    await cni.del({ ...rt, args: [], capabilityArgs: {} });
    assert.deepEqual(plugins.commands(), ["portmap DEL", "bridge DEL"]);
    for (const call of plugins.calls.filter((c) => c.command === "DEL")) {
      assert.equal(call.conf.name, "testnet");
      assert.equal(call.env.CNI_ARGS, "IgnoreUnknown=1;K8S_POD_NAME=web");
      assert.deepEqual((call.conf.prevResult as { ips: unknown }).ips, [{ interface: 2, address: added.ips[0]?.address, gateway: "10.251.0.1" }]);
    }
    assert.deepEqual(plugins.calls.find((c) => c.type === "portmap")?.conf.runtimeConfig, { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] });
    assert.ok(plugins.isClean());
    assert.deepEqual(await readdir(join(cacheDir, "results")), []);
  });

  it("runs DEL with CNI_NETNS empty when the netns is gone", async () => {
    await writeConf("1.0.0");
    await cni.add(rt);
    plugins.calls.length = 0;
    await cni.del({ ...rt, netnsPath: "" });
    assert.deepEqual(
      plugins.calls.map((c) => c.env.CNI_NETNS),
      ["", ""],
    );
    assert.ok(plugins.isClean());
  });

  it("repeats DEL without a cache entry against the current configuration, and skips it when there is none", async () => {
    await writeConf("1.0.0");
    await cni.del(rt);
    assert.deepEqual(plugins.commands(), ["portmap DEL", "bridge DEL"]);
    assert.equal(plugins.calls[0]?.conf.prevResult, undefined);
    await rm(join(confDir, "10-test.conflist"));
    plugins.calls.length = 0;
    await cni.del(rt);
    assert.deepEqual(plugins.commands(), []);
  });

  it("keeps the cache entry when DEL fails, so that it can be repeated", async () => {
    await writeConf("1.0.0");
    await cni.add(rt);
    plugins.overrides.set("bridge DEL", () => cniError(5, "cannot release"));
    await assert.rejects(cni.del(rt), (err: unknown) => err instanceof VmpodError && err.kind === "Internal" && /CNI plugin bridge DEL: cannot release/.test(err.message));
    assert.equal(await cni.cached(ID, "eth0"), true);
    plugins.overrides.clear();
    await cni.del(rt);
    assert.ok(plugins.isClean());
  });

  it("gives no prevResult to DEL in a 0.3.1 network, and hands results on in the network's version", async () => {
    await writeConf("0.3.1");
    await cni.add(rt);
    const portmapAdd = plugins.calls.find((c) => c.type === "portmap" && c.command === "ADD");
    assert.deepEqual((portmapAdd?.conf.prevResult as { ips: unknown }).ips, [{ version: "4", interface: 2, address: "10.251.0.2/24", gateway: "10.251.0.1" }]);
    assert.equal((portmapAdd?.conf.prevResult as { cniVersion: unknown }).cniVersion, "0.3.1");
    plugins.calls.length = 0;
    await cni.del(rt);
    for (const call of plugins.calls) assert.equal(call.conf.prevResult, undefined);
  });

  it("runs CHECK in order against the cached result, from 0.4.0 on, unless the network disables it", async () => {
    await writeConf("0.4.0");
    await assert.rejects(cni.check(rt), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound");
    await cni.add(rt);
    plugins.calls.length = 0;
    await cni.check(rt);
    assert.deepEqual(plugins.commands(), ["bridge CHECK", "portmap CHECK"]);
    assert.ok(plugins.calls.every((c) => c.conf.prevResult !== undefined));
    plugins.overrides.set("bridge CHECK", () => cniError(100, "eth0 has the wrong address"));
    await assert.rejects(cni.check(rt), (err: unknown) => err instanceof VmpodError && /CNI plugin bridge CHECK: eth0 has the wrong address/.test(err.message));
    await writeConf("0.4.0", { disableCheck: true });
    plugins.calls.length = 0;
    await cni.check(rt);
    assert.deepEqual(plugins.commands(), []);
    await writeConf("0.3.1");
    await assert.rejects(cni.check(rt), (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && /CHECK needs cniVersion 0\.4\.0/.test(err.message));
    await cni.del(rt);
  });

  it("refuses a plugin's output that is not a result", async () => {
    await writeConf("1.0.0");
    plugins.overrides.set("bridge ADD", () => ({ exitCode: 0, stdout: "done!", stderr: "" }));
    await assert.rejects(cni.add(rt), (err: unknown) => err instanceof VmpodError && /CNI plugin bridge ADD printed no JSON/.test(err.message));
  });

  it("compares versions", () => {
    assert.ok(versionAtLeast("1.0.0", "0.4.0"));
    assert.ok(versionAtLeast("0.4.0", "0.4.0"));
    assert.ok(!versionAtLeast("0.3.1", "0.4.0"));
    assert.ok(versionAtLeast("0.10.0", "0.4.0"));
  });
});
