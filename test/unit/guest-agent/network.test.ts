import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { constants, tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError, type ErrorKind } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { GuestNetwork } from "../../../guest/agent/network.js";
import type { InterfaceRequest, RouteRequest } from "../../../guest/agent/network-spec.js";
import { IFF_UP } from "../../../guest/agent/network-netlink.js";
import { FakeKernel, ip } from "./fake-rtnl.js";

const MAC = "52:54:00:12:34:56";

async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VmpodError, `expected a VmpodError, got ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (message) assert.match(err.message, message);
    return true;
  });
}

const nic = (over: Partial<InterfaceRequest> = {}): InterfaceRequest => ({
  name: "eth0",
  mac: MAC,
  mtu: 1450,
  addresses: [
    { family: 4, address: "10.88.0.5", mask: "16" },
    { family: 6, address: "fd00:88::5", mask: "64" },
  ],
  ...over,
});

const route = (over: Partial<RouteRequest>): RouteRequest => ({ family: 4, dest: "", gateway: "", device: "eth0", source: "", scope: 0, flags: 0, ...over });

describe("guest agent: network", () => {
  let kernel: FakeKernel;
  let network: GuestNetwork;
  let dir: string;
  let marker: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-net-"));
    marker = join(dir, "modules-ready");
    kernel = new FakeKernel();
    // The NIC as the virtio_net driver makes it: eth0, down, no addresses.
    kernel.addLink(2, "eth0", MAC);
    network = new GuestNetwork({ open: () => kernel.open(), modulesReady: marker, linkWaitMs: 2000, log: silentLogger });
  });

  afterEach(async () => {
    assert.equal(kernel.closed, kernel.opened, "every rtnetlink socket is closed");
    await rm(dir, { recursive: true, force: true });
  });

  describe("UpdateInterface", () => {
    it("finds the link by MAC in any case, sets its MTU and addresses, brings it up and reports it", async () => {
      const state = await network.updateInterface(nic({ mac: MAC.toUpperCase() }));
      assert.deepEqual(kernel.calls, [
        "set 2 mtu=1450",
        "add-addr 2 10.88.0.5/16 brd 10.88.255.255",
        `add-addr 2 ${Buffer.from(ip("fd00:88::5")).toString("hex")}/64 nodad`,
        "set 2 up",
      ]);
      assert.deepEqual(state, {
        name: "eth0",
        mac: MAC,
        mtu: 1450,
        flags: 0x1002 | IFF_UP,
        addresses: [
          { family: 4, address: "10.88.0.5", prefixLength: 16 },
          { family: 6, address: "fd00:88::5", prefixLength: 64 },
        ],
      });
    });

    it("renames a link that is up by taking it down first, and leaves the MTU at 0", async () => {
      kernel.links[1] = { ...kernel.links[1]!, name: "ens3", flags: 0x1003 };
      await network.updateInterface(nic({ mtu: 0, addresses: [] }));
      assert.deepEqual(kernel.calls, ["set 2 down", "set 2 name=eth0", "set 2 up"]);
      assert.equal(kernel.link("eth0")?.mtu, 1500);
    });

    it("moves aside another link that holds the name", async () => {
      kernel.addLink(3, "eth1", "52:54:00:00:00:03");
      kernel.links[1] = { ...kernel.links[1]!, name: "eth1" };
      kernel.links[2] = { ...kernel.links[2]!, name: "eth0", flags: 0x1003 };
      await network.updateInterface(nic({ addresses: [], mtu: 0 }));
      assert.deepEqual(kernel.calls, ["set 3 down", "set 3 name=vmpod-aside3", "set 2 name=eth0", "set 2 up"]);
      assert.deepEqual(
        kernel.links.map((l) => l.name),
        ["lo", "eth0", "vmpod-aside3"],
      );
    });

    it("replaces the addresses: keeps those asked for and the IPv6 link-local one, removes the rest", async () => {
      kernel.addAddress(2, 4, "10.88.0.5", 16);
      kernel.addAddress(2, 4, "10.88.0.9", 16);
      kernel.addAddress(2, 4, "10.99.0.5", 24);
      kernel.addAddress(2, 6, "fe80::5054:ff:fe12:3456", 64, 253);
      kernel.addAddress(2, 6, "fd00:88::5", 48);
      await network.updateInterface(nic({ mtu: 1500 }));
      const hex = Buffer.from(ip("fd00:88::5")).toString("hex");
      assert.deepEqual(kernel.calls, ["del-addr 2 10.88.0.9/16", "del-addr 2 10.99.0.5/24", `del-addr 2 ${hex}/48`, `add-addr 2 ${hex}/64 nodad`, "set 2 up"]);
      const left = kernel.addresses.map((a) => `${a.family} ${a.prefixLength}`);
      assert.deepEqual(left, ["4 16", "6 64", "6 64"]);
    });

    it("is idempotent: a second identical request changes nothing", async () => {
      await network.updateInterface(nic());
      kernel.calls.length = 0;
      await network.updateInterface(nic());
      assert.deepEqual(kernel.calls, []);
    });

    it("brings loopback up when it is down", async () => {
      kernel.links[0] = { ...kernel.links[0]!, flags: 0x8 };
      await network.updateInterface(nic({ addresses: [], mtu: 0 }));
      assert.deepEqual(kernel.calls, ["set 1 up", "set 2 up"]);
    });

    it("waits for the link while the guest's modules are not in", async () => {
      kernel.links.splice(1, 1);
      const pending = network.updateInterface(nic({ addresses: [] }));
      await new Promise((r) => setTimeout(r, 100));
      kernel.addLink(2, "eth0", MAC);
      await writeFile(marker, "");
      assert.equal((await pending).name, "eth0");
    });

    it("is NotFound for an unknown MAC once the modules are in, and after its wait otherwise", async () => {
      await writeFile(marker, "");
      const start = Date.now();
      await rejectsWith(network.updateInterface(nic({ mac: "52:54:00:00:00:99" })), "NotFound", /52:54:00:00:00:99/);
      assert.ok(Date.now() - start < 1000, "no wait once the modules are in");
      await rm(marker);
      const quick = new GuestNetwork({ open: () => kernel.open(), modulesReady: marker, linkWaitMs: 150, log: silentLogger });
      await rejectsWith(quick.updateInterface(nic({ mac: "52:54:00:00:00:99" })), "NotFound", /not all in after 150 ms/);
      assert.deepEqual(kernel.calls, []);
    });

    it("refuses malformed requests with InvalidArgument before changing anything", async () => {
      const bad: [Partial<InterfaceRequest>, RegExp][] = [
        [{ mac: "52:54:00:12:34" }, /MAC/],
        [{ mac: "52-54-00-12-34-56" }, /MAC/],
        [{ name: "a-name-longer-than-15" }, /name/],
        [{ name: "eth/0" }, /name/],
        [{ mtu: 20 }, /MTU/],
        [{ mtu: 70000 }, /MTU/],
        [{ addresses: [{ family: 4, address: "10.0.0.300", mask: "24" }] }, /IP address/],
        [{ addresses: [{ family: 4, address: "fd00::1", mask: "64" }] }, /not an IPv4/],
        [{ addresses: [{ family: 6, address: "fe80::1%eth0", mask: "64" }] }, /IP address/],
        [{ addresses: [{ family: 4, address: "10.0.0.1", mask: "255.255.255.0" }] }, /prefix length/],
        [{ addresses: [{ family: 4, address: "10.0.0.1", mask: "33" }] }, /prefix length/],
        [{ addresses: [{ family: 6, address: "fd00::1", mask: "" }] }, /prefix length/],
        [
          {
            addresses: [
              { family: 4, address: "10.0.0.1", mask: "24" },
              { family: 4, address: "10.0.0.1", mask: "16" },
            ],
          },
          /twice/,
        ],
      ];
      for (const [over, message] of bad) await rejectsWith(network.updateInterface(nic(over)), "InvalidArgument", message);
      assert.deepEqual(kernel.calls, []);
      assert.equal(kernel.opened, 0);
    });

    it("gives the kernel's refusals their kinds", async () => {
      kernel.failures.set("set 2 mtu", constants.errno.EINVAL);
      await rejectsWith(network.updateInterface(nic()), "InvalidArgument", /update interface .*: set 2 mtu=1450: EINVAL/);
      kernel.failures.set("add-addr", constants.errno.ENOBUFS);
      await rejectsWith(network.updateInterface(nic()), "ResourceExhausted");
      kernel.failures.set("set 2 up", constants.errno.EIO);
      await rejectsWith(network.updateInterface(nic()), "Internal");
    });

    it("serves one request at a time", async () => {
      kernel.delayMs = 2;
      await Promise.all([network.updateInterface(nic()), network.listInterfaces(), network.updateRoutes([]), network.listRoutes()]);
      assert.equal(kernel.maxOpen, 1);
    });
  });

  describe("UpdateRoutes", () => {
    beforeEach(async () => {
      await network.updateInterface(nic());
      kernel.calls.length = 0;
    });

    it("adds on-link routes before those through a gateway, IPv4 and IPv6, and reports them", async () => {
      const applied = await network.updateRoutes([
        route({ dest: "", gateway: "10.88.0.1" }),
        route({ family: 6, dest: "::/0", gateway: "fd00:88::1" }),
        route({ dest: "10.96.0.0/12", gateway: "10.88.0.1" }),
        route({ family: 6, dest: "fd00:88::/64", scope: 253 }),
        route({ dest: "10.88.0.0/16", scope: 253, source: "10.88.0.5" }),
      ]);
      const v6 = (text: string) => Buffer.from(ip(text)).toString("hex");
      assert.deepEqual(kernel.calls, [
        `route ${v6("fd00:88::")}/64 dev 2`,
        "route 10.88.0.0/16 dev 2",
        "route default via 10.88.0.1 dev 2",
        `route default via ${v6("fd00:88::1")} dev 2`,
        "route 10.96.0.0/12 via 10.88.0.1 dev 2",
      ]);
      assert.deepEqual(applied, [
        { family: 6, dest: "fd00:88::/64", gateway: "", device: "eth0", source: "", scope: 253, flags: 0 },
        { family: 4, dest: "10.88.0.0/16", gateway: "", device: "eth0", source: "10.88.0.5", scope: 253, flags: 0 },
        { family: 4, dest: "", gateway: "10.88.0.1", device: "eth0", source: "", scope: 0, flags: 0 },
        { family: 6, dest: "", gateway: "fd00:88::1", device: "eth0", source: "", scope: 0, flags: 0 },
        { family: 4, dest: "10.96.0.0/12", gateway: "10.88.0.1", device: "eth0", source: "", scope: 0, flags: 0 },
      ]);
      const listed = await network.listRoutes();
      assert.deepEqual(
        listed.map((r) => `${r.dest || "default"} ${r.gateway}`.trim()).sort(),
        ["10.88.0.0/16", "10.96.0.0/12 10.88.0.1", "default 10.88.0.1", "default fd00:88::1", "fd00:88::/64"],
      );
    });

    it("replaces the routes: the old ones go, the kernel's own and loopback's stay", async () => {
      kernel.addRoute({ family: 4, dst: ip("10.50.0.0"), dstLength: 16, gateway: ip("10.88.0.254"), oif: 2 });
      kernel.addRoute({ family: 4, dst: ip("127.0.0.0"), dstLength: 8, oif: 1 });
      kernel.addRoute({ family: 6, dst: ip("fd99::"), dstLength: 64, oif: 2 });
      kernel.calls.length = 0;
      await network.updateRoutes([route({ gateway: "10.88.0.1" })]);
      assert.deepEqual(kernel.calls, ["route default via 10.88.0.1 dev 2", "del-route 10.50.0.0/16 via 10.88.0.254 dev 2", `del-route ${Buffer.from(ip("fd99::")).toString("hex")}/64 dev 2`]);
      const left = (await network.listRoutes()).map((r) => `${r.device} ${r.dest || "default"} ${r.gateway}`.trim());
      assert.deepEqual(left, ["eth0 10.88.0.0/16", "eth0 default 10.88.0.1", "eth0 fd00:88::/64"]);
      assert.ok(kernel.routes.some((r) => r.oif === 1), "loopback's route stays");
    });

    it("replaces a route in place rather than removing it when it is asked for again", async () => {
      await network.updateRoutes([route({ gateway: "10.88.0.1" })]);
      kernel.calls.length = 0;
      await network.updateRoutes([route({ gateway: "10.88.0.1" })]);
      assert.deepEqual(kernel.calls, ["route default via 10.88.0.1 dev 2"]);
    });

    it("leaves the old routes when the kernel refuses a new one, with its kind", async () => {
      await network.updateRoutes([route({ dest: "10.50.0.0/16", gateway: "10.88.0.1" })]);
      await rejectsWith(network.updateRoutes([route({ gateway: "192.168.1.1" })]), "FailedPrecondition", /ENETUNREACH/);
      assert.deepEqual(
        (await network.listRoutes()).map((r) => r.dest),
        ["10.88.0.0/16", "10.50.0.0/16", "fd00:88::/64"],
      );
      // On the link whatever its prefixes, as Kata's RTNH_F_ONLINK says.
      const [applied] = await network.updateRoutes([route({ gateway: "192.168.1.1", flags: 4 })]);
      assert.equal(applied?.flags, 4);
    });

    it("is NotFound for a device the guest has not, before changing anything", async () => {
      await rejectsWith(network.updateRoutes([route({ gateway: "10.88.0.1" }), route({ device: "eth9", dest: "10.1.0.0/16" })]), "NotFound", /eth9/);
      assert.deepEqual(kernel.calls, []);
    });

    it("refuses malformed routes with InvalidArgument before changing anything", async () => {
      const bad: [Partial<RouteRequest>, RegExp][] = [
        [{ dest: "10.1.0.0/33" }, /destination/],
        [{ dest: "10.1.0.1/16" }, /bits set past/],
        [{ dest: "fd00::/64" }, /IPv4 destination/],
        [{ family: 6, dest: "10.0.0.0/8" }, /IPv6 destination/],
        [{ gateway: "fd00::1" }, /gateway/],
        [{ gateway: "10.0.0.256" }, /gateway/],
        [{ source: "nonsense" }, /source/],
        [{ device: "" }, /device/],
        [{ scope: 300 }, /scope/],
      ];
      for (const [over, message] of bad) await rejectsWith(network.updateRoutes([route(over)]), "InvalidArgument", message);
      assert.deepEqual(kernel.calls, []);
    });

    it("takes a bare address as a host route and 0.0.0.0/0 or 'default' as the default route", async () => {
      const applied = await network.updateRoutes([route({ dest: "10.88.7.7", scope: 253 }), route({ dest: "0.0.0.0/0", gateway: "10.88.0.1" }), route({ family: 6, dest: "default", gateway: "fd00:88::1" })]);
      assert.deepEqual(
        applied.map((r) => r.dest),
        ["10.88.7.7/32", "", ""],
      );
    });
  });

  it("lists the interfaces with their addresses", async () => {
    kernel.addAddress(1, 4, "127.0.0.1", 8, 254);
    await network.updateInterface(nic({ addresses: [{ family: 4, address: "10.88.0.5", mask: "16" }] }));
    const listed = await network.listInterfaces();
    assert.deepEqual(
      listed.map((i) => [i.name, i.addresses.map((a) => `${a.address}/${a.prefixLength}`)]),
      [
        ["lo", ["127.0.0.1/8"]],
        ["eth0", ["10.88.0.5/16"]],
      ],
    );
  });
});
