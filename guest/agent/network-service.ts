/**
 * The agent's network RPCs (UpdateInterface, UpdateRoutes, ListInterfaces,
 * ListRoutes): protobuf messages to and from the guest network's terms.
 * None needs a sandbox: the host configures the network before
 * CreateSandbox, as Kata's runtime does.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import { VmpodError } from "../../src/common/errors.js";
import type { ServiceImpl } from "../../src/agent/ttrpc/typed.js";
import { IPFamily, type AgentService, type InterfaceSchema, type Route, type RouteSchema } from "../../src/gen/agent_pb.js";
import type { IpFamily } from "./network-ip.js";
import type { GuestNetwork, InterfaceState, RouteState } from "./network.js";
import type { RouteRequest } from "./network-spec.js";

type NetworkMethods = Pick<ServiceImpl<typeof AgentService.method>, "updateInterface" | "updateRoutes" | "listInterfaces" | "listRoutes">;

export function networkService(network: GuestNetwork): NetworkMethods {
  return {
    async updateInterface(req) {
      const i = req.interface;
      if (!i) throw new VmpodError("InvalidArgument", "UpdateInterface without an interface");
      if (i.mtu > 0xffffffffn) throw new VmpodError("InvalidArgument", `interface ${i.hwAddr}: MTU ${i.mtu} is out of range`);
      const state = await network.updateInterface({
        name: i.name !== "" ? i.name : i.device,
        mac: i.hwAddr,
        mtu: Number(i.mtu),
        addresses: i.IPAddresses.map((a) => ({ family: familyOf(a.family), address: a.address, mask: a.mask })),
      });
      return interfaceToProto(state);
    },
    async updateRoutes(req) {
      const routes = await network.updateRoutes((req.routes?.Routes ?? []).map(routeOf));
      return { Routes: routes.map(routeToProto) };
    },
    async listInterfaces() {
      return { Interfaces: (await network.listInterfaces()).map(interfaceToProto) };
    },
    async listRoutes() {
      return { Routes: (await network.listRoutes()).map(routeToProto) };
    },
  };
}

function familyOf(family: IPFamily): IpFamily {
  if (family === IPFamily.v4) return 4;
  if (family === IPFamily.v6) return 6;
  throw new VmpodError("InvalidArgument", `unknown IP family ${family as number}`);
}

function familyToProto(family: IpFamily): IPFamily {
  return family === 4 ? IPFamily.v4 : IPFamily.v6;
}

function routeOf(r: Route): RouteRequest {
  return { family: familyOf(r.family), dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope, flags: r.flags };
}

function interfaceToProto(s: InterfaceState): MessageInitShape<typeof InterfaceSchema> {
  return {
    device: s.name,
    name: s.name,
    hwAddr: s.mac,
    mtu: BigInt(s.mtu),
    rawFlags: s.flags,
    IPAddresses: s.addresses.map((a) => ({ family: familyToProto(a.family), address: a.address, mask: String(a.prefixLength) })),
  };
}

function routeToProto(r: RouteState): MessageInitShape<typeof RouteSchema> {
  return { family: familyToProto(r.family), dest: r.dest, gateway: r.gateway, device: r.device, source: r.source, scope: r.scope, flags: r.flags };
}
