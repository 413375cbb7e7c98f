/**
 * Pods' networks with the real CNI plugins (Debian's, in /usr/lib/cni) on a
 * bridge and subnet of the test's own: netns, addresses, taps, TC redirects
 * (and macvtaps) made and removed for real, frames carried both ways, port
 * mappings in iptables, a failing plugin, a restart. Only namespaces, links
 * and rules the test makes are touched, and none is left afterwards.
 */
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { chmod, mkdir, mkdtemp, readdir, readlink, rm, writeFile } from "node:fs/promises";
import { closeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { run } from "../../../src/common/exec.js";
import { exists } from "../../../src/common/fs.js";
import { newId } from "../../../src/common/ids.js";
import { silentLogger } from "../../../src/common/log.js";
import type { NetworkConfig } from "../../../src/config/types.js";
import { netnsName } from "../../../src/network/netns.js";
import { createPodNetwork } from "../../../src/network/pod-network.js";
import { redirectTargets } from "../../../src/network/tc-redirect.js";
import type { PodNetworkAttachment, PodNetworkRequest } from "../../../src/network/types.js";
import { processesMentioning } from "../../helpers/leaks.js";
import { arpThrough } from "./arp.js";

/** The tap a VM's pod network comes with. */
function tapFdOf(att: { readonly tapFd?: number }): number {
  assert.ok(att.tapFd !== undefined, "a VM's pod network comes with its tap");
  return att.tapFd;
}

const PLUGINS = "/usr/lib/cni";
const SHARED_CHAINS = ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"];

const ipJson = async (args: string[]) => JSON.parse((await run("ip", ["-j", ...args])).stdout || "[]") as Record<string, unknown>[];
const natRules = async () => (await run("iptables", ["-t", "nat", "-S"])).stdout;
const netnsList = async () => (await readdir("/run/netns").catch(() => [] as string[])).sort();
const hostRoutes = async () => JSON.stringify(await ipJson(["route", "show", "table", "all"]));

describe("pod network with real CNI plugins", function () {
  this.timeout(120_000);
  const tag = randomBytes(4).toString("hex");
  const bridge = `vmpt${tag}`;
  const subnet = `10.251.${randomInt(1, 250)}`;
  const gateway = `${subnet}.1`;
  const netName = `vmpt-${tag}`;
  let root: string;
  let ipamDir: string;
  let config: NetworkConfig;
  let chainsBefore: boolean;
  let netnsBefore: string[];
  let routesBefore: string;
  const openFds = new Set<number>();

  const conflist = (extra: object[] = []) =>
    JSON.stringify({
      cniVersion: "1.0.0",
      name: netName,
      plugins: [
        { type: "bridge", bridge, isGateway: true, ipMasq: false, ipam: { type: "host-local", ranges: [[{ subnet: `${subnet}.0/24` }]], routes: [{ dst: "0.0.0.0/0" }], dataDir: ipamDir } },
        { type: "portmap", capabilities: { portMappings: true }, snat: true },
        ...extra,
      ],
    });
  const request = (podId: string, hostPort: number): PodNetworkRequest => ({
    podId,
    name: `pod-${podId.slice(0, 6)}`,
    namespace: "vmpt",
    uid: podId.slice(0, 8),
    portMappings: [{ protocol: "tcp", containerPort: 80, hostPort, hostIp: "" }],
  });
  const keep = (att: PodNetworkAttachment) => {
    assert.ok(att.tapFd !== undefined, "a VM's pod network comes with its tap");
    openFds.add(att.tapFd);
    return att;
  };
  const closeTap = (att: PodNetworkAttachment) => {
    if (att.tapFd === undefined) return;
    closeSync(att.tapFd);
    openFds.delete(att.tapFd);
  };
  const bridgePorts = async () => (await ipJson(["link", "show", "master", bridge]).catch(() => [])).map((l) => l.ifname);
  const ipamFiles = async () => (await readdir(join(ipamDir, netName)).catch(() => [] as string[])).filter((f) => f.startsWith(subnet));
  const cacheFiles = async () =>
    (await readdir(config.cacheDir, { recursive: true, withFileTypes: true }).catch(() => []))
      .filter((e) => !e.isDirectory())
      .map((e) => e.name);

  before(async function () {
    if (process.getuid?.() !== 0 || !(await exists(join(PLUGINS, "bridge"))) || !(await exists("/dev/net/tun"))) {
      console.log(`    (skipped: these tests need root, ${PLUGINS}/bridge (containernetworking-plugins) and /dev/net/tun)`);
      this.skip();
    }
    root = await mkdtemp(join(tmpdir(), "vmpod-netit-"));
    ipamDir = join(root, "ipam");
    config = { confDir: join(root, "net.d"), binDirs: [join(root, "bin"), PLUGINS], cacheDir: join(root, "cache"), pluginTimeoutMs: 20_000, interNetworkingModel: "tcfilter" };
    await mkdir(config.confDir);
    await mkdir(join(root, "bin"));
    await writeFile(join(config.confDir, "10-test.conflist"), conflist());
    chainsBefore = (await natRules()).includes("-N CNI-HOSTPORT-DNAT");
    netnsBefore = await netnsList();
    routesBefore = await hostRoutes();
  });

  after(async function () {
    if (root === undefined) return;
    for (const fd of openFds) closeSync(fd);
    if ((await ipJson(["link", "show"])).some((l) => l.ifname === bridge)) await run("ip", ["link", "delete", bridge]);
    if (!chainsBefore) await removeSharedChainsIfUnused();
    await rm(root, { recursive: true, force: true });
    // Nothing of the test's is left on the host.
    assert.deepEqual(await netnsList(), netnsBefore, "network namespaces");
    assert.equal((await ipJson(["link", "show"])).filter((l) => String(l.ifname).startsWith(bridge)).length, 0, "links");
    assert.equal((await natRules()).includes(subnet), false, "iptables rules");
    assert.equal(await hostRoutes(), routesBefore, "host routes");
    assert.deepEqual(await processesMentioning(root), []);
    assert.equal(await exists(root), false);
  });

  it("sets up two pods: each an address, eth0, a tap with redirects both ways, a port mapping; frames cross; tear-down removes it all", async () => {
    const net = createPodNetwork(config, silentLogger);
    assert.deepEqual(await net.status(), { ready: true });
    const ids = [newId(), newId()];
    const ports = [randomInt(30000, 31000), randomInt(31000, 32000)];
    const atts: PodNetworkAttachment[] = [];
    for (const [i, id] of ids.entries()) atts.push(keep(await net.setUp(request(id, ports[i] ?? 0))));

    const ips = atts.map((a) => a.ips[0]);
    assert.notEqual(ips[0], ips[1]);
    for (const [i, att] of atts.entries()) {
      const id = ids[i] ?? "";
      const ns = netnsName(id);
      const ip = ips[i] ?? "";
      assert.equal(att.netnsPath, `/run/netns/${ns}`);
      assert.ok(await exists(att.netnsPath));
      assert.match(ip, new RegExp(`^${subnet.replace(/\./g, "\\.")}\\.\\d+$`));
      // The NIC is eth0's identity; the routes are the ones the plugins set in the netns.
      const [eth0] = await ipJson(["-n", ns, "addr", "show", "dev", "eth0"]);
      assert.equal(att.nic.mac, eth0?.address);
      assert.equal(att.nic.mtu, eth0?.mtu);
      assert.deepEqual(att.nic.addresses, [{ family: 4, address: ip, prefixLength: 24 }]);
      assert.deepEqual(
        (eth0?.addr_info as { family: string; local: string }[]).filter((a) => a.family === "inet").map((a) => a.local),
        [ip],
      );
      const kernelRoutes = (await ipJson(["-n", ns, "route", "show", "dev", "eth0"])).map((r) => `${r.dst === "default" ? "0.0.0.0/0" : String(r.dst)} ${String(r.gateway ?? "link")}`);
      assert.deepEqual(att.routes.map((r) => `${r.destination} ${r.gateway ?? "link"}`).sort(), kernelRoutes.sort());
      assert.deepEqual(att.routes.find((r) => r.destination === "0.0.0.0/0"), { family: 4, destination: "0.0.0.0/0", gateway, device: "eth0", scope: "universe" });
      // The tap: in the netns, up, with eth0's MTU, held by the descriptor handed over.
      const [tap] = await ipJson(["-n", ns, "link", "show", "dev", "tap0_vmpod"]);
      assert.equal(tap?.mtu, att.nic.mtu);
      assert.ok((tap?.flags as string[]).includes("UP"));
      assert.equal(await readlink(`/proc/self/fd/${att.tapFd}`), "/dev/net/tun");
      // Both redirects, as tc shows them.
      assert.deepEqual(await redirectTargets(ns, "eth0"), ["tap0_vmpod"]);
      assert.deepEqual(await redirectTargets(ns, "tap0_vmpod"), ["eth0"]);
      const shown = (await run("tc", ["-n", ns, "filter", "show", "dev", "eth0", "ingress"])).stdout;
      assert.match(shown, /mirred \(Egress Redirect to device tap0_vmpod\)/);
      // A frame written as the guest would goes out through eth0; the gateway's answer comes back to the tap.
      const bridgeMac = String((await ipJson(["link", "show", "dev", bridge]))[0]?.address);
      assert.equal(await arpThrough(tapFdOf(att), att.nic.mac, ip, gateway), bridgeMac);
      // The host port.
      assert.match(await natRules(), new RegExp(`--dport ${ports[i]} -j DNAT --to-destination ${ip.replace(/\./g, "\\.")}:80`));
      assert.equal((await ipamFiles()).includes(ip), true);
    }
    assert.equal((await bridgePorts()).length, 2);
    assert.deepEqual((await net.list()).sort(), [...ids].sort());

    for (const [i, att] of atts.entries()) {
      closeTap(att);
      await net.tearDown(ids[i] ?? "");
    }
    assert.deepEqual(await netnsList(), netnsBefore);
    assert.deepEqual(await bridgePorts(), []);
    assert.deepEqual(await ipamFiles(), []);
    assert.deepEqual(await cacheFiles(), []);
    const rules = await natRules();
    for (const ip of ips) assert.equal(rules.includes(`${ip}:80`), false);
    for (const id of ids) await net.tearDown(id); // again: nothing to do, no error
  });

  it("tears down after a restart (a new instance) from the records on disk", async () => {
    const id = newId();
    const first = createPodNetwork(config, silentLogger);
    const att = keep(await first.setUp(request(id, randomInt(32000, 32500))));
    closeTap(att);
    const second = createPodNetwork(config, silentLogger);
    const found = await second.find(id);
    assert.deepEqual(found?.ips, att.ips);
    assert.equal(found?.nic.mac, att.nic.mac);
    // The tap went with its descriptor.
    assert.equal((await ipJson(["-n", netnsName(id), "link", "show"])).some((l) => l.ifname === "tap0_vmpod"), false);
    await second.tearDown(id);
    assert.deepEqual(await netnsList(), netnsBefore);
    assert.deepEqual(await ipamFiles(), []);
    assert.deepEqual(await cacheFiles(), []);
    assert.equal((await natRules()).includes(`${att.ips[0]}:80`), false);
  });

  it("turns a failing plugin's error into a clear error and leaves nothing", async () => {
    const plugin = join(root, "bin", "vmptfail");
    await writeFile(
      plugin,
      `#!/bin/sh
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
ADD) echo '{"cniVersion":"1.0.0","code":11,"msg":"vmptfail refuses","details":"as the test asked"}'; exit 1 ;;
esac
exit 0
`,
    );
    await chmod(plugin, 0o755);
    const failConf = { ...config, confDir: join(root, "net-fail.d") };
    await mkdir(failConf.confDir);
    await writeFile(join(failConf.confDir, "10-fail.conflist"), conflist([{ type: "vmptfail" }]));
    const net = createPodNetwork(failConf, silentLogger);
    const id = newId();
    await assert.rejects(
      net.setUp(request(id, randomInt(32500, 33000))),
      (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable" && err.message === "set up pod network: CNI plugin vmptfail ADD: vmptfail refuses (as the test asked) [CNI error 11]",
    );
    assert.deepEqual(await netnsList(), netnsBefore);
    assert.deepEqual(await bridgePorts(), []);
    assert.deepEqual(await ipamFiles(), []);
    assert.deepEqual(await cacheFiles(), []);
    assert.equal((await natRules()).includes(subnet), false);
  });

  it("is not ready, saying why, while a plugin of the configuration is missing", async () => {
    const conf = { ...config, confDir: join(root, "net-missing.d") };
    await mkdir(conf.confDir);
    await writeFile(join(conf.confDir, "10-x.conflist"), conflist([{ type: "vmpt-no-such-plugin" }]));
    const status = await createPodNetwork(conf, silentLogger).status();
    assert.equal(status.ready, false);
    assert.equal(status.reason, "NetworkPluginNotReady");
    assert.match(status.message ?? "", /CNI plugin vmpt-no-such-plugin of .*10-x\.conflist is not in/);
  });

  it("with internetworking_model macvtap: a macvtap with eth0's address, opened by descriptor; frames cross; tear-down removes it", async () => {
    const net = createPodNetwork({ ...config, interNetworkingModel: "macvtap" }, silentLogger);
    const id = newId();
    const ns = netnsName(id);
    const att = keep(await net.setUp(request(id, randomInt(33000, 33500))));
    const links = await ipJson(["-n", ns, "link", "show"]);
    const macvtap = links.find((l) => l.ifname === "mvtap0_vmpod");
    const eth0 = links.find((l) => l.ifname === "eth0");
    assert.equal(macvtap?.address, att.nic.mac);
    assert.notEqual(eth0?.address, att.nic.mac);
    assert.equal(macvtap?.mtu, att.nic.mtu);
    assert.deepEqual(await redirectTargets(ns, "eth0"), []);
    assert.match(await readlink(`/proc/self/fd/${att.tapFd}`), /\/cache\/dev\/tap-[0-9a-f]+ \(deleted\)$/);
    assert.deepEqual(await readdir(join(config.cacheDir, "dev")), []);
    const bridgeMac = String((await ipJson(["link", "show", "dev", bridge]))[0]?.address);
    assert.equal(await arpThrough(tapFdOf(att), att.nic.mac, att.ips[0] ?? "", gateway), bridgeMac);
    closeTap(att);
    await net.tearDown(id);
    assert.deepEqual(await netnsList(), netnsBefore);
    assert.deepEqual(await bridgePorts(), []);
    assert.deepEqual(await ipamFiles(), []);
    assert.deepEqual(await cacheFiles(), []);
  });
});

/** Removes the host-port chains portmap made for this test, when no one else has rules in them. */
async function removeSharedChainsIfUnused(): Promise<void> {
  const rules = await natRules();
  if (!rules.includes("-N CNI-HOSTPORT-DNAT") || rules.split("\n").some((l) => l.startsWith("-A CNI-HOSTPORT-DNAT "))) return;
  const jumps = rules.split("\n").filter((l) => /^-A (PREROUTING|OUTPUT|POSTROUTING) .*-j CNI-HOSTPORT-(DNAT|MASQ)$/.test(l));
  for (const rule of jumps) await run("sh", ["-c", `iptables -t nat ${rule.replace(/^-A/, "-D")}`]);
  for (const chain of SHARED_CHAINS) {
    if (!rules.includes(`-N ${chain}`)) continue;
    await run("iptables", ["-t", "nat", "-F", chain]);
    await run("iptables", ["-t", "nat", "-X", chain]);
  }
}
