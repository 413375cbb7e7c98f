import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { interfaceFromProto, interfaceToProto, routeFromProto, routeToProto } from "../../../src/agent/translate.js";
import { InterfaceSchema, IPFamily, RouteSchema } from "../../../src/gen/agent_pb.js";

describe("agent translate: network", () => {
  it("sends an interface as Kata's types.Interface: name twice, prefix lengths as masks", () => {
    const proto = create(
      InterfaceSchema,
      interfaceToProto({
        name: "eth0",
        mac: "52:54:00:12:34:56",
        mtu: 1450,
        addresses: [
          { family: 4, address: "10.88.0.5", prefixLength: 16 },
          { family: 6, address: "fd00::5", prefixLength: 64 },
        ],
      }),
    );
    assert.equal(proto.device, "eth0");
    assert.equal(proto.name, "eth0");
    assert.equal(proto.hwAddr, "52:54:00:12:34:56");
    assert.equal(proto.mtu, 1450n);
    assert.deepEqual(
      proto.IPAddresses.map((a) => [a.family, a.address, a.mask]),
      [
        [IPFamily.v4, "10.88.0.5", "16"],
        [IPFamily.v6, "fd00::5", "64"],
      ],
    );
  });

  it("reads an interface back, up when IFF_UP is set", () => {
    const proto = create(InterfaceSchema, {
      name: "eth0",
      hwAddr: "52:54:00:12:34:56",
      mtu: 1500n,
      rawFlags: 0x11043,
      IPAddresses: [{ family: IPFamily.v6, address: "fe80::1", mask: "64" }],
    });
    assert.deepEqual(interfaceFromProto(proto), {
      name: "eth0",
      mac: "52:54:00:12:34:56",
      mtu: 1500,
      up: true,
      addresses: [{ family: 6, address: "fe80::1", prefixLength: 64 }],
    });
    assert.equal(interfaceFromProto(create(InterfaceSchema, { rawFlags: 0x1002 })).up, false);
  });

  it("sends the default route with an empty destination and a scope by default: link without gateway, universe with one", () => {
    const send = (r: Parameters<typeof routeToProto>[0]) => {
      const p = create(RouteSchema, routeToProto(r));
      return [p.family, p.dest, p.gateway, p.device, p.source, p.scope];
    };
    assert.deepEqual(send({ family: 4, destination: "0.0.0.0/0", gateway: "10.88.0.1", device: "eth0" }), [IPFamily.v4, "", "10.88.0.1", "eth0", "", 0]);
    assert.deepEqual(send({ family: 6, destination: "::/0", gateway: "fd00::1", device: "eth0" }), [IPFamily.v6, "", "fd00::1", "eth0", "", 0]);
    assert.deepEqual(send({ family: 4, destination: "10.88.0.0/16", device: "eth0", source: "10.88.0.5" }), [IPFamily.v4, "10.88.0.0/16", "", "eth0", "10.88.0.5", 253]);
    assert.deepEqual(send({ family: 4, destination: "10.96.0.0/12", gateway: "10.88.0.1", device: "eth0", scope: "link" })[5], 253);
    assert.deepEqual(send({ family: 4, destination: "10.88.0.9/32", device: "eth0", scope: "host" })[5], 254);
  });

  it("reads routes back in domain terms", () => {
    assert.deepEqual(routeFromProto(create(RouteSchema, { family: IPFamily.v6, dest: "", gateway: "fd00::1", device: "eth0" })), {
      family: 6,
      destination: "::/0",
      gateway: "fd00::1",
      device: "eth0",
      scope: "universe",
    });
    assert.deepEqual(routeFromProto(create(RouteSchema, { family: IPFamily.v4, dest: "10.88.0.0/16", device: "eth0", source: "10.88.0.5", scope: 253 })), {
      family: 4,
      destination: "10.88.0.0/16",
      device: "eth0",
      source: "10.88.0.5",
      scope: "link",
    });
  });
});
