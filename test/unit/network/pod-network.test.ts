import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError, kindOf } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import type { NetworkConfig } from "../../../src/config/types.js";
import { createPodNetwork } from "../../../src/network/pod-network.js";
import type { PodNetwork, PodNetworkRequest } from "../../../src/network/types.js";
import { FakeHost, FakePlugins, cniError } from "./fakes.js";

/** The tap a VM's pod network comes with. */
function tapFdOf(att: { readonly tapFd?: number }): number {
  assert.ok(att.tapFd !== undefined, "a VM's pod network comes with its tap");
  return att.tapFd;
}

const POD = "d".repeat(64);
const NS = "vmpod-dddddddddddddddddddddddd";

describe("pod network", () => {
  let root: string;
  let config: NetworkConfig;
  let host: FakeHost;
  let plugins: FakePlugins;
  let net: PodNetwork;

  const request = (extra: Partial<PodNetworkRequest> = {}): PodNetworkRequest => ({
    podId: POD,
    name: "web-0",
    namespace: "shop",
    uid: "uid-1",
    portMappings: [
      { protocol: "tcp", containerPort: 80, hostPort: 8080, hostIp: "" },
      { protocol: "udp", containerPort: 53, hostPort: 0, hostIp: "" },
    ],
    ...extra,
  });
  const make = (model: NetworkConfig["interNetworkingModel"] = "tcfilter") => {
    config = { ...config, interNetworkingModel: model };
    return createPodNetwork(config, silentLogger, { exec: plugins, host });
  };
  /** Everything on disk under the cache dir, but empty directories. */
  const cacheFiles = async () => (await readdir(config.cacheDir, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => e.name);
  const assertNothingLeft = async () => {
    assert.ok(host.isClean(), `host left: ${JSON.stringify({ netns: [...host.netns], redirects: [...host.redirects], fds: [...host.openFds] })}`);
    assert.ok(plugins.isClean(), `plugins left: ${JSON.stringify({ addresses: [...plugins.addresses], rules: [...plugins.rules] })}`);
    assert.deepEqual(await cacheFiles(), []);
  };

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-podnet-"));
    config = { confDir: join(root, "net.d"), binDirs: ["/usr/lib/cni"], cacheDir: join(root, "cache"), pluginTimeoutMs: 1000, interNetworkingModel: "tcfilter" };
    await mkdir(config.confDir);
    await writeFile(
      join(config.confDir, "10-test.conflist"),
      JSON.stringify({ cniVersion: "1.0.0", name: "testnet", plugins: [{ type: "bridge" }, { type: "portmap", capabilities: { portMappings: true } }] }),
    );
    host = new FakeHost();
    plugins = new FakePlugins(host);
    net = make();
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("sets up netns, CNI, tap and redirects, and describes the guest's NIC", async () => {
    const att = await net.setUp(request());
    assert.deepEqual(
      { ...att, tapFd: typeof att.tapFd },
      {
        netnsPath: `/run/netns/${NS}`,
        nic: { name: "eth0", mac: "0a:58:0a:fb:00:02", mtu: 1450, addresses: [{ family: 4, address: "10.251.0.2", prefixLength: 24 }] },
        routes: [
          { family: 4, destination: "10.251.0.0/24", device: "eth0", scope: "link" },
          { family: 4, destination: "0.0.0.0/0", gateway: "10.251.0.1", device: "eth0", scope: "universe" },
        ],
        ips: ["10.251.0.2"],
        tapFd: "number",
      },
    );
    assert.ok(host.netns.has(NS));
    assert.equal(host.links.get(NS)?.get("tap0_vmpod")?.mtu, 1450);
    assert.deepEqual([...host.redirects].sort(), [`${NS} eth0>tap0_vmpod`, `${NS} tap0_vmpod>eth0`]);
    assert.ok(host.openFds.has(tapFdOf(att)));
    assert.deepEqual(plugins.rules.get(POD), [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }]);
    const add = plugins.calls.find((c) => c.command === "ADD");
    assert.equal(add?.env.CNI_ARGS, `IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=${POD};K8S_POD_UID=uid-1`);
    assert.equal(add?.env.CNI_CONTAINERID, POD);
    assert.deepEqual(await net.find(POD), { netnsPath: att.netnsPath, nic: att.nic, routes: att.routes, ips: att.ips });
    assert.deepEqual(await net.list(), [POD]);
    host.closeFd(tapFdOf(att)); // the caller's part
    await net.tearDown(POD);
    await assertNothingLeft();
  });

  it("makes no VM device for containers that run in the netns itself, and tears down the same", async () => {
    const att = await net.setUp(request({ vmLink: false }));
    assert.equal(att.tapFd, undefined);
    assert.equal(host.links.get(NS)?.get("tap0_vmpod"), undefined, "no tap");
    assert.deepEqual([...host.redirects], [], "no redirects");
    assert.deepEqual([...host.openFds], [], "no descriptor");
    assert.ok(att.ips.length > 0, "the pod has its address");
    await net.tearDown(POD);
    await assertNothingLeft();
  });

  it("tears down with DEL in reverse, and a second tear-down is a no-op", async () => {
    const att = await net.setUp(request());
    host.closeFd(tapFdOf(att));
    plugins.calls.length = 0;
    await net.tearDown(POD);
    assert.deepEqual(plugins.commands(), ["portmap DEL", "bridge DEL"]);
    assert.ok(plugins.calls.every((c) => c.env.CNI_NETNS === `/run/netns/${NS}` && c.conf.prevResult !== undefined));
    await assertNothingLeft();
    plugins.calls.length = 0;
    await net.tearDown(POD);
    assert.deepEqual(plugins.commands(), []);
    assert.equal(await net.find(POD), undefined);
    assert.deepEqual(await net.list(), []);
  });

  it("tears down after a restart from the records on disk alone", async () => {
    const att = await net.setUp(request());
    host.closeFd(tapFdOf(att));
    const after = make();
    assert.deepEqual(await after.list(), [POD]);
    assert.deepEqual((await after.find(POD))?.ips, ["10.251.0.2"]);
    await after.tearDown(POD);
    await assertNothingLeft();
  });

  it("runs DEL with an empty CNI_NETNS when the netns is gone, so the address is still released", async () => {
    const att = await net.setUp(request());
    host.closeFd(tapFdOf(att));
    await host.removeNetns(NS);
    assert.equal(await net.find(POD), undefined);
    plugins.calls.length = 0;
    await net.tearDown(POD);
    assert.deepEqual(
      plugins.calls.map((c) => c.env.CNI_NETNS),
      ["", ""],
    );
    await assertNothingLeft();
  });

  it("with macvtap: a macvtap on eth0, no redirects, and it goes with tear-down", async () => {
    net = make("macvtap");
    const att = await net.setUp(request());
    assert.ok(host.links.get(NS)?.has("mvtap0_vmpod"));
    assert.equal(host.links.get(NS)?.has("tap0_vmpod"), false);
    assert.equal(host.redirects.size, 0);
    assert.equal(att.nic.mac, "0a:58:0a:fb:00:02");
    host.closeFd(tapFdOf(att));
    await net.tearDown(POD);
    await assertNothingLeft();
  });

  // Each step that can fail, and what the failure must look like.
  const failures: { step: string; arrange: () => void; kind: string; message: RegExp }[] = [
    { step: "creating the netns", arrange: () => host.failing.add("createNetns"), kind: "Internal", message: /set up pod network: fake host: createNetns failed/ },
    { step: "the first plugin's ADD", arrange: () => plugins.overrides.set("bridge ADD", () => cniError(11, "no addresses left")), kind: "Unavailable", message: /CNI plugin bridge ADD: no addresses left/ },
    { step: "the second plugin's ADD", arrange: () => plugins.overrides.set("portmap ADD", () => cniError(7, "bad portmap config")), kind: "InvalidArgument", message: /CNI plugin portmap ADD: bad portmap config/ },
    { step: "reading eth0", arrange: () => host.failing.add("readLink"), kind: "Internal", message: /readLink failed/ },
    { step: "opening the tap", arrange: () => host.failing.add("openTap"), kind: "Internal", message: /openTap failed/ },
    { step: "adding the redirects (halfway)", arrange: () => host.failing.add("addRedirect"), kind: "Internal", message: /addRedirect failed/ },
    { step: "a plugin missing", arrange: () => plugins.handlers.delete("portmap"), kind: "FailedPrecondition", message: /CNI plugin portmap .* is not in \/usr\/lib\/cni/ },
  ];
  for (const f of failures) {
    it(`undoes every step when ${f.step} fails`, async () => {
      f.arrange();
      await assert.rejects(net.setUp(request()), (err: unknown) => err instanceof VmpodError && err.kind === f.kind && f.message.test(err.message));
      host.failing.clear();
      await assertNothingLeft();
      assert.deepEqual(await net.list(), []);
    });
  }

  it("undoes every step when the request is canceled during set-up", async () => {
    const ac = new AbortController();
    plugins.overrides.set("portmap ADD", (_call, conf) => {
      ac.abort();
      return { exitCode: 0, stdout: JSON.stringify(conf.prevResult), stderr: "" };
    });
    await assert.rejects(net.setUp(request({ signal: ac.signal })), (err: unknown) => kindOf(err) === "Canceled");
    await assertNothingLeft();
  });

  it("keeps the record when undoing fails too, and tear-down finishes the job", async () => {
    host.failing.add("openTap");
    plugins.overrides.set("bridge DEL", () => cniError(5, "cannot release"));
    await assert.rejects(
      net.setUp(request()),
      (err: unknown) => err instanceof VmpodError && err.kind === "Internal" && /openTap failed; undoing it failed too .*CNI plugin bridge DEL: cannot release/.test(err.message),
    );
    assert.deepEqual(await net.list(), [POD]);
    plugins.overrides.clear();
    host.failing.clear();
    await net.tearDown(POD);
    await assertNothingLeft();
  });

  it("keeps netns and record when DEL fails on tear-down, so that it can be repeated", async () => {
    const att = await net.setUp(request());
    host.closeFd(tapFdOf(att));
    plugins.overrides.set("bridge DEL", () => cniError(11, "busy"));
    await assert.rejects(net.tearDown(POD), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable" && /^tear down pod network: CNI plugin bridge DEL: busy/.test(err.message));
    assert.ok(host.netns.has(NS));
    assert.deepEqual(await net.list(), [POD]);
    plugins.overrides.clear();
    await net.tearDown(POD);
    await assertNothingLeft();
  });

  it("refuses a second set-up of the same pod, and bad requests", async () => {
    const att = await net.setUp(request());
    await assert.rejects(net.setUp(request()), (err: unknown) => err instanceof VmpodError && err.kind === "AlreadyExists");
    host.closeFd(tapFdOf(att));
    await net.tearDown(POD);
    const invalid = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";
    await assert.rejects(net.setUp(request({ podId: "abc" })), invalid);
    await assert.rejects(net.setUp(request({ portMappings: [{ protocol: "tcp", containerPort: 0, hostPort: 80, hostIp: "" }] })), invalid);
    await assert.rejects(net.setUp(request({ portMappings: [{ protocol: "tcp", containerPort: 80, hostPort: 80, hostIp: "localhost" }] })), invalid);
    await assert.rejects(net.setUp(request({ name: "a;b" })), invalid);
    await assertNothingLeft();
  });

  it("serializes set-up and tear-down of one pod", async () => {
    const [att] = await Promise.all([net.setUp(request()), net.tearDown(POD)]);
    assert.equal(host.netns.size, 0, "the tear-down ran after the set-up");
    host.closeFd(tapFdOf(att));
    await assertNothingLeft();
  });

  it("reports NetworkReady false with NetworkPluginNotReady until a usable configuration is there", async () => {
    assert.deepEqual(await net.status(), { ready: true });
    await rm(join(config.confDir, "10-test.conflist"));
    const s = await net.status();
    assert.equal(s.ready, false);
    assert.equal(s.reason, "NetworkPluginNotReady");
    assert.match(s.message ?? "", /no CNI network configuration/);
    await assert.rejects(net.setUp(request()), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound");
    await assertNothingLeft();
  });
});
