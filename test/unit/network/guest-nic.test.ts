import assert from "node:assert/strict";
import { parseCniResult } from "../../../src/network/cni-result.js";
import { guestNic, guestRoutes, networkAddress, podDns, podIps, sandboxInterfaceIndex } from "../../../src/network/guest-nic.js";

const NS = "/run/netns/vmpod-abc";

describe("the guest NIC from a CNI result", () => {
  const bridgeResult = parseCniResult(
    {
      cniVersion: "1.0.0",
      interfaces: [
        { name: "vmpod0", mac: "7e:ac:38:10:d0:7e" },
        { name: "veth201048ad", mac: "fa:03:a7:2a:e1:da" },
        { name: "eth0", mac: "9E:C1:4B:A8:07:71", sandbox: NS },
      ],
      ips: [
        { interface: 2, address: "fd00:10::5/64", gateway: "fd00:10::1" },
        { interface: 2, address: "10.251.77.2/24", gateway: "10.251.77.1" },
      ],
      routes: [{ dst: "0.0.0.0/0" }, { dst: "::/0" }, { dst: "192.168.7.0/24", gw: "10.251.77.254" }],
      dns: { nameservers: ["10.96.0.10"], domain: "ns.svc.cluster.local", search: ["svc.cluster.local"], options: ["ndots:5"] },
    },
    "r",
  );

  it("finds the container-side interface by name and netns, not the host side", () => {
    assert.equal(sandboxInterfaceIndex(bridgeResult, "eth0", NS), 2);
    assert.equal(sandboxInterfaceIndex(bridgeResult, "vmpod0", NS), -1);
    assert.equal(sandboxInterfaceIndex(bridgeResult, "eth1", NS), -1);
  });

  it("takes the interface's MAC from the result, its MTU from the link, its addresses IPv4 first", () => {
    const nic = guestNic(bridgeResult, "eth0", NS, { mac: "00:00:00:00:00:01", mtu: 1450 });
    assert.deepEqual(nic, {
      name: "eth0",
      mac: "9e:c1:4b:a8:07:71",
      mtu: 1450,
      addresses: [
        { family: 4, address: "10.251.77.2", prefixLength: 24 },
        { family: 6, address: "fd00:10::5", prefixLength: 64 },
      ],
    });
    assert.deepEqual(podIps(nic), ["10.251.77.2", "fd00:10::5"]);
  });

  it("takes the MAC from the link when the result has none, and leaves out other interfaces' addresses", () => {
    const r = parseCniResult(
      {
        cniVersion: "0.4.0",
        interfaces: [{ name: "host0" }, { name: "eth0", sandbox: NS }],
        ips: [
          { version: "4", interface: 0, address: "169.254.1.1/32" },
          { version: "4", interface: 1, address: "10.0.0.9/16" },
        ],
      },
      "r",
    );
    const nic = guestNic(r, "eth0", NS, { mac: "AA:BB:CC:00:11:22", mtu: 1500 });
    assert.equal(nic.mac, "aa:bb:cc:00:11:22");
    assert.deepEqual(nic.addresses, [{ family: 4, address: "10.0.0.9", prefixLength: 16 }]);
  });

  it("gives on-link subnet routes first, then routes through the gateway of their family (as the IPAM plugins configure them)", () => {
    const nic = guestNic(bridgeResult, "eth0", NS, { mac: "", mtu: 1500 });
    assert.deepEqual(guestRoutes(bridgeResult, nic), [
      { family: 4, destination: "10.251.77.0/24", device: "eth0", scope: "link" },
      { family: 6, destination: "fd00:10::/64", device: "eth0", scope: "link" },
      { family: 4, destination: "0.0.0.0/0", gateway: "10.251.77.1", device: "eth0", scope: "universe" },
      { family: 6, destination: "::/0", gateway: "fd00:10::1", device: "eth0", scope: "universe" },
      { family: 4, destination: "192.168.7.0/24", gateway: "10.251.77.254", device: "eth0", scope: "universe" },
    ]);
  });

  it("makes a route without a gateway on-link when its family has no gateway, and gives /32 addresses no subnet route", () => {
    const r = parseCniResult({ cniVersion: "1.0.0", interfaces: [{ name: "eth0", sandbox: NS }], ips: [{ interface: 0, address: "10.1.2.3/32" }], routes: [{ dst: "10.1.0.0/16" }, { dst: "10.1.2.3/16" }] }, "r");
    const nic = guestNic(r, "eth0", NS, { mac: "02:00:00:00:00:01", mtu: 1500 });
    assert.deepEqual(guestRoutes(r, nic), [{ family: 4, destination: "10.1.0.0/16", device: "eth0", scope: "link" }]);
  });

  it("computes subnet addresses of both families", () => {
    assert.equal(networkAddress("10.251.77.200", 24, 4), "10.251.77.0");
    assert.equal(networkAddress("10.251.77.200", 0, 4), "0.0.0.0");
    assert.equal(networkAddress("172.31.255.255", 12, 4), "172.16.0.0");
    assert.equal(networkAddress("fd00:10:0:0:abcd::5", 64, 6), "fd00:10::");
    assert.equal(networkAddress("2001:db8:1234:5678:9abc::1", 52, 6), "2001:db8:1234:5000::");
    assert.equal(networkAddress("::ffff:10.1.2.3", 120, 6), "::ffff:a01:200");
    assert.equal(networkAddress("::1", 128, 6), "::1");
  });

  it("passes DNS on, with the domain searched first, and none when the result has none", () => {
    assert.deepEqual(podDns(bridgeResult), { nameservers: ["10.96.0.10"], search: ["ns.svc.cluster.local", "svc.cluster.local"], options: ["ndots:5"] });
    assert.equal(podDns(parseCniResult({ cniVersion: "1.0.0", dns: {} }, "r")), undefined);
  });
});
