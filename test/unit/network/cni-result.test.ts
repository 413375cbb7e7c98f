import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { cidrFamily, encodeCniResult, parseCniResult } from "../../../src/network/cni-result.js";

const interfaces = [
  { name: "cni0", mac: "0A:58:0A:58:00:01" },
  { name: "veth1", mac: "fe:11:22:33:44:55" },
  { name: "eth0", mac: "0a:58:0a:58:00:05", sandbox: "/run/netns/p" },
];

describe("CNI results", () => {
  it("reads a 0.3.x / 0.4.0 result, whose addresses carry their version", () => {
    for (const cniVersion of ["0.3.0", "0.3.1", "0.4.0"]) {
      const r = parseCniResult(
        {
          cniVersion,
          interfaces,
          ips: [
            { version: "4", interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" },
            { version: "6", interface: 2, address: "fd00::5/64", gateway: "fd00::1" },
          ],
          routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::1" }],
          dns: { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] },
        },
        "r",
      );
      assert.equal(r.cniVersion, cniVersion);
      assert.deepEqual(r.interfaces[0], { name: "cni0", mac: "0a:58:0a:58:00:01" });
      assert.deepEqual(r.interfaces[2], { name: "eth0", mac: "0a:58:0a:58:00:05", sandbox: "/run/netns/p" });
      assert.deepEqual(r.ips, [
        { family: 4, address: "10.88.0.5/16", gateway: "10.88.0.1", interface: 2 },
        { family: 6, address: "fd00::5/64", gateway: "fd00::1", interface: 2 },
      ]);
      assert.deepEqual(r.routes, [{ dst: "0.0.0.0/0" }, { dst: "::/0", gw: "fd00::1" }]);
      assert.deepEqual(r.dns, { nameservers: ["10.96.0.10"], domain: "cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] });
    }
  });

  it("reads a 1.0.0 result, where the family comes from the address", () => {
    const r = parseCniResult({ cniVersion: "1.0.0", interfaces, ips: [{ interface: 2, address: "10.251.3.7/24", gateway: "10.251.3.1" }], dns: {} }, "r");
    assert.deepEqual(r.ips, [{ family: 4, address: "10.251.3.7/24", gateway: "10.251.3.1", interface: 2 }]);
    assert.deepEqual(r.routes, []);
    assert.deepEqual(r.dns, { nameservers: [], search: [], options: [] });
  });

  it("reads a result with no interfaces or routes (IPAM plugins', loopback's)", () => {
    const r = parseCniResult({ cniVersion: "1.0.0", ips: [{ address: "10.1.2.3/8" }] }, "r");
    assert.deepEqual(r.interfaces, []);
    assert.deepEqual(r.ips, [{ family: 4, address: "10.1.2.3/8" }]);
  });

  it("refuses results it cannot trust, naming where they came from", () => {
    const check = (doc: unknown, pattern: RegExp) =>
      assert.throws(() => parseCniResult(doc, "CNI plugin bridge ADD result"), (err: unknown) => err instanceof VmpodError && err.kind === "Internal" && /^CNI plugin bridge ADD result: /.test(err.message) && pattern.test(err.message));
    check("text", /not a JSON object/);
    check({ cniVersion: "0.2.0", ip4: { ip: "10.0.0.2/24" } }, /cniVersion "0\.2\.0" is not one this runtime reads/);
    check({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2" }] }, /ips\[0\]\.address "10\.0\.0\.2" is not an address with a prefix length/);
    check({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/33" }] }, /is not an address with a prefix length/);
    check({ cniVersion: "0.4.0", ips: [{ version: "6", address: "10.0.0.2/24" }] }, /says version "6"/);
    check({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.2/24", gateway: "fd00::1" }] }, /gateway "fd00::1" is not an IPv4 address/);
    check({ cniVersion: "1.0.0", interfaces, ips: [{ address: "10.0.0.2/24", interface: 3 }] }, /ips\[0\]\.interface 3 names no interface/);
    check({ cniVersion: "1.0.0", routes: [{ dst: "default" }] }, /routes\[0\]\.dst/);
    check({ cniVersion: "1.0.0", routes: [{ dst: "0.0.0.0/0", gw: "fd00::1" }] }, /routes\[0\]\.gw/);
    check({ cniVersion: "1.0.0", interfaces: [{ mac: "x" }] }, /interfaces\[0\] has no name/);
    check({ cniVersion: "1.0.0", ips: {} }, /"ips" is not a list/);
  });

  it("writes a result back in the network's version: with address versions before 1.0.0, without from 1.0.0", () => {
    const r = parseCniResult(
      { cniVersion: "1.0.0", interfaces, ips: [{ interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" }, { address: "fd00::5/64" }], routes: [{ dst: "0.0.0.0/0" }], dns: { nameservers: ["1.1.1.1"] } },
      "r",
    );
    assert.deepEqual(encodeCniResult(r, "1.0.0"), {
      cniVersion: "1.0.0",
      interfaces: [{ name: "cni0", mac: "0a:58:0a:58:00:01" }, { name: "veth1", mac: "fe:11:22:33:44:55" }, { name: "eth0", mac: "0a:58:0a:58:00:05", sandbox: "/run/netns/p" }],
      ips: [{ interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" }, { address: "fd00::5/64" }],
      routes: [{ dst: "0.0.0.0/0" }],
      dns: { nameservers: ["1.1.1.1"] },
    });
    const old = encodeCniResult(r, "0.3.1");
    assert.equal(old.cniVersion, "0.3.1");
    assert.deepEqual(old.ips, [{ version: "4", interface: 2, address: "10.88.0.5/16", gateway: "10.88.0.1" }, { version: "6", address: "fd00::5/64" }]);
    // and it reads back to the same thing
    assert.deepEqual(parseCniResult(old, "again"), { ...r, cniVersion: "0.3.1" });
  });

  it("tells the family of an address with a prefix length", () => {
    assert.equal(cidrFamily("10.0.0.0/8"), 4);
    assert.equal(cidrFamily("0.0.0.0/0"), 4);
    assert.equal(cidrFamily("::/0"), 6);
    assert.equal(cidrFamily("2001:db8::1/128"), 6);
    assert.equal(cidrFamily("2001:db8::1/129"), undefined);
    assert.equal(cidrFamily("10.0.0.1"), undefined);
    assert.equal(cidrFamily("10.0.0.1/x"), undefined);
    assert.equal(cidrFamily(7), undefined);
  });
});
