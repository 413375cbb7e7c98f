/**
 * The agent's network RPCs against a real kernel: the agent runs in its own
 * network namespace (harness.ts), given one end of a veth pair whose other
 * end is in a namespace the test makes (the "host" side, with a gateway
 * address and, behind it, addresses only the default routes reach). What
 * the agent did is read back with iproute2, not with the agent's own code,
 * and proven with pings both ways.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { AgentClient } from "../../../src/agent/client.js";
import { run } from "../../../src/common/exec.js";
import { rejectsWith, startAgent, type AgentHandle } from "./harness.js";

const MAC = "52:54:00:5e:00:02";

interface IpAddr {
  readonly ifname: string;
  readonly mtu: number;
  readonly flags: string[];
  readonly address: string;
  readonly addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
}

interface IpRoute {
  readonly dst: string;
  readonly gateway?: string;
  readonly dev: string;
  readonly protocol?: string;
  readonly scope?: string;
}

describe("guest agent: network on a real kernel", function () {
  let agent: AgentHandle;
  let client: AgentClient;
  let ns: string;
  let guestNet: string;
  const tag = randomBytes(3).toString("hex");

  /** iproute2 in the agent's namespace, as JSON. */
  const inGuest = async <T>(...args: string[]): Promise<T> => JSON.parse((await run("nsenter", [`--net=${guestNet}`, "ip", "-j", ...args])).stdout) as T;
  const pingFromGuest = (...args: string[]) => run("nsenter", [`--net=${guestNet}`, "busybox", "ping", "-c", "1", "-W", "5", ...args]);
  const pingFromHost = (...args: string[]) => run("ip", ["netns", "exec", ns, "busybox", "ping", "-c", "1", "-W", "5", ...args]);

  beforeEach(async () => {
    agent = await startAgent();
    client = new AgentClient(agent.client, 15_000);
    guestNet = `/proc/${agent.process.pid}/ns/net`;
    ns = `vmpod-gn-${tag}`;
    const hostEnd = `gnh${tag}`;
    await run("ip", ["netns", "add", ns]);
    // The guest's end is created straight in the agent's namespace, under a name the agent changes.
    await run("ip", ["-n", ns, "link", "add", hostEnd, "type", "veth", "peer", "name", `gnc${tag}`, "address", MAC, "netns", String(agent.process.pid)]);
    for (const args of [
      ["addr", "add", "10.213.0.1/24", "dev", hostEnd],
      ["addr", "add", "fd00:213::1/64", "dev", hostEnd, "nodad"],
      // Reached from the guest only through its default routes.
      ["addr", "add", "192.0.2.7/32", "dev", "lo"],
      ["addr", "add", "2001:db8::7/128", "dev", "lo"],
      ["link", "set", "lo", "up"],
      ["link", "set", hostEnd, "up"],
    ]) {
      await run("ip", ["-n", ns, ...args]);
    }
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed") process.stderr.write(`--- agent log ---\n${agent.log()}\n`);
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
    await agent.stop();
    const left = (await run("ip", ["netns", "list"])).stdout;
    assert.ok(!left.includes(ns), `netns ${ns} left behind`);
  });

  it("configures the interface and routes so that the guest and the host reach each other, IPv4 and IPv6", async () => {
    const state = await client.updateInterface({
      name: "eth0",
      mac: MAC.toUpperCase(),
      mtu: 1400,
      addresses: [
        { family: 4, address: "10.213.0.2", prefixLength: 24 },
        { family: 6, address: "fd00:213::2", prefixLength: 64 },
      ],
    });
    assert.equal(state.name, "eth0");
    assert.equal(state.mac, MAC);
    assert.equal(state.mtu, 1400);
    assert.equal(state.up, true);

    const [link] = await inGuest<IpAddr[]>("addr", "show", "dev", "eth0");
    assert.equal(link?.mtu, 1400);
    assert.ok(link.flags.includes("UP"), `flags ${link.flags.join(",")}`);
    assert.equal(link.address, MAC);
    const global = link.addr_info.filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`);
    assert.deepEqual(global, ["10.213.0.2/24", "fd00:213::2/64"]);
    const [lo] = await inGuest<IpAddr[]>("link", "show", "dev", "lo");
    assert.ok(lo?.flags.includes("UP"), "loopback is up");

    const applied = await client.updateRoutes([
      { family: 4, destination: "0.0.0.0/0", gateway: "10.213.0.1", device: "eth0" },
      { family: 6, destination: "::/0", gateway: "fd00:213::1", device: "eth0" },
      { family: 4, destination: "10.213.0.0/24", device: "eth0", scope: "link" },
    ]);
    assert.deepEqual(
      applied.map((r) => `${r.destination} ${r.gateway ?? "-"} ${r.scope ?? ""}`),
      ["10.213.0.0/24 - link", "0.0.0.0/0 10.213.0.1 universe", "::/0 fd00:213::1 universe"],
    );
    const v4 = await inGuest<IpRoute[]>("route", "show");
    assert.deepEqual(
      v4.map((r) => `${r.dst} ${r.gateway ?? "-"} ${r.dev}`).sort(),
      ["10.213.0.0/24 - eth0", "default 10.213.0.1 eth0"],
    );
    const v6 = await inGuest<IpRoute[]>("-6", "route", "show", "default");
    assert.deepEqual(
      v6.map((r) => `${r.gateway} ${r.dev}`),
      ["fd00:213::1 eth0"],
    );

    await pingFromHost("10.213.0.2");
    await pingFromHost("-6", "fd00:213::2");
    await pingFromGuest("10.213.0.1");
    // Off the guest's subnets: through the default routes.
    await pingFromGuest("192.0.2.7");
    await pingFromGuest("-6", "2001:db8::7");

    const listed = await client.listInterfaces();
    const eth0 = listed.find((i) => i.name === "eth0");
    assert.equal(eth0?.up, true);
    assert.ok(eth0.addresses.some((a) => a.address === "fd00:213::2" && a.prefixLength === 64));
    const routes = await client.listRoutes();
    assert.ok(routes.some((r) => r.family === 6 && r.destination === "::/0" && r.gateway === "fd00:213::1"));
  });

  it("replaces routes, keeps the old ones when a gateway is unreachable, and refuses bad requests with their kinds", async () => {
    await client.updateInterface({ name: "eth0", mac: MAC, mtu: 0, addresses: [{ family: 4, address: "10.213.0.2", prefixLength: 24 }] });
    await client.updateRoutes([{ family: 4, destination: "198.51.100.0/24", gateway: "10.213.0.1", device: "eth0" }]);
    await client.updateRoutes([{ family: 4, destination: "0.0.0.0/0", gateway: "10.213.0.1", device: "eth0" }]);
    const routes = async () => (await inGuest<IpRoute[]>("route", "show")).map((r) => `${r.dst} ${r.gateway ?? "-"}`).sort();
    assert.deepEqual(await routes(), ["10.213.0.0/24 -", "default 10.213.0.1"], "the earlier route is gone, the kernel's stays");

    await rejectsWith(client.updateRoutes([{ family: 4, destination: "0.0.0.0/0", gateway: "172.16.0.1", device: "eth0" }]), "FailedPrecondition");
    assert.deepEqual(await routes(), ["10.213.0.0/24 -", "default 10.213.0.1"], "a refused update leaves the routes as they were");
    await rejectsWith(client.updateRoutes([{ family: 4, destination: "0.0.0.0/0", gateway: "10.213.0.1", device: "eth7" }]), "NotFound");
    await rejectsWith(client.updateRoutes([{ family: 4, destination: "10.1.2.3/8", device: "eth0" }]), "InvalidArgument");

    await rejectsWith(client.updateInterface({ name: "eth0", mac: MAC, mtu: 0, addresses: [{ family: 4, address: "10.213.0.300", prefixLength: 24 }] }), "InvalidArgument");
    await rejectsWith(client.updateInterface({ name: "eth0", mac: MAC, mtu: 100_000, addresses: [] }), "InvalidArgument");
    // Once the guest's modules are in, a MAC not there is not waited for.
    await writeFile(join(agent.dir, "modules-ready"), "");
    await rejectsWith(client.updateInterface({ name: "eth1", mac: "52:54:00:5e:00:99", mtu: 0, addresses: [] }), "NotFound", /52:54:00:5e:00:99/);
    const [link] = await inGuest<IpAddr[]>("addr", "show", "dev", "eth0");
    assert.deepEqual(
      link?.addr_info.filter((a) => a.family === "inet").map((a) => a.local),
      ["10.213.0.2"],
      "refused requests changed nothing",
    );
  });
});
