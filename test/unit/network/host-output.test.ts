import assert from "node:assert/strict";
import { parseLinks } from "../../../src/network/links.js";
import { parseRedirectTargets } from "../../../src/network/tc-redirect.js";
import { ifreq } from "../../../src/network/tap.js";
import { randomMac } from "../../../src/network/macvtap.js";
import { netnsName, netnsPath } from "../../../src/network/netns.js";
import { VmpodError } from "../../../src/common/errors.js";

describe("reading iproute2's output and naming things in a pod's netns", () => {
  it("reads links from ip -j link show", () => {
    const json = JSON.stringify([
      { ifindex: 1, ifname: "lo", mtu: 65536, address: "00:00:00:00:00:00" },
      { ifindex: 2, link_index: 6, ifname: "eth0", mtu: 1450, address: "9e:c1:4b:a8:07:71", link_netnsid: 0 },
      { ifindex: 3, ifname: "broken" },
    ]);
    assert.deepEqual(parseLinks(json), [
      { name: "lo", index: 1, mac: "00:00:00:00:00:00", mtu: 65536 },
      { name: "eth0", index: 2, mac: "9e:c1:4b:a8:07:71", mtu: 1450 },
    ]);
    assert.deepEqual(parseLinks(""), []);
  });

  it("reads the targets of mirred redirects from tc -j filter show", () => {
    const json = JSON.stringify([
      { parent: "ffff:", protocol: "all", pref: 49152, kind: "u32", chain: 0 },
      { parent: "ffff:", protocol: "all", pref: 49152, kind: "u32", chain: 0, options: { fh: "800:", ht_divisor: 1 } },
      { parent: "ffff:", kind: "u32", options: { fh: "800::800", actions: [{ order: 1, kind: "mirred", mirred_action: "redirect", direction: "egress", to_dev: "tap0_vmpod" }] } },
      { parent: "ffff:", kind: "u32", options: { actions: [{ kind: "mirred", mirred_action: "mirror", to_dev: "other" }] } },
    ]);
    assert.deepEqual(parseRedirectTargets(json), ["tap0_vmpod"]);
    assert.deepEqual(parseRedirectTargets(""), []);
  });

  it("builds struct ifreq for TUNSETIFF and refuses names the kernel would cut", () => {
    const buf = ifreq("tap0_vmpod", 0x5002);
    assert.equal(buf.length, 40);
    assert.equal(buf.toString("latin1", 0, 10), "tap0_vmpod");
    assert.equal(buf[10], 0);
    assert.equal(buf.readUInt16LE(16), 0x5002);
    assert.throws(() => ifreq("a-name-too-long-", 0), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
    assert.throws(() => ifreq("bad/name", 0), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
  });

  it("makes random unicast, locally administered hardware addresses", () => {
    for (let i = 0; i < 50; i++) {
      const mac = randomMac();
      assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      const first = parseInt(mac.slice(0, 2), 16);
      assert.equal(first & 1, 0, "unicast");
      assert.equal(first & 2, 2, "locally administered");
    }
  });

  it("names a pod's netns after its id", () => {
    const id = "0123456789abcdef".repeat(4);
    assert.equal(netnsName(id), "vmpod-0123456789abcdef01234567");
    assert.equal(netnsPath(netnsName(id)), "/run/netns/vmpod-0123456789abcdef01234567");
    assert.throws(() => netnsName("short"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
    assert.throws(() => netnsPath("../etc"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
  });
});
