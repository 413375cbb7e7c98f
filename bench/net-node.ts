/**
 * The node of the network benchmark, made without touching the machine's
 * real network: a network namespace standing for the node (the daemon runs
 * in it; the CNI bridge, its routes and iptables rules land there and go
 * with it), the CNI configuration the daemon reads (bridge, host-local,
 * portmap, as deploy/cni ships, on a test-only subnet), and plain network
 * namespaces joined to the same bridge by veth pairs at addresses outside
 * host-local's range. Each thing made is pushed on the caller's rollback
 * stack the moment it exists.
 */
import { spawn } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError, wrap } from "../src/common/errors.js";
import { run } from "../src/common/exec.js";
import { exists } from "../src/common/fs.js";
import type { Rollback } from "../src/common/rollback.js";
import { createNetns, removeNetns } from "../src/network/netns.js";

export const CNI_BIN_DIR = "/usr/lib/cni";

/** The test-only /24: host-local hands out .10 to .99, the gateway (the bridge) is .1, the rest is the benchmark's. */
export const SUBNET_PREFIX = "10.253.7";

export interface BenchNode {
  /** The netns standing for the node. */
  readonly netns: string;
  /** The CNI bridge's name (made by the bridge plugin at the first pod). */
  readonly bridge: string;
  /** The `[cni]` section of the daemon's configuration.toml. */
  readonly cniToml: string;
}

/**
 * Makes the node's netns (loopback up) and writes the conflist under `dir`.
 * `tag` (a few hex characters) keeps names apart from concurrent runs.
 */
export async function makeNode(undo: Rollback, tag: string, dir: string): Promise<BenchNode> {
  if (!(await exists(join(CNI_BIN_DIR, "bridge")))) {
    throw new VmpodError("FailedPrecondition", `no CNI plugins in ${CNI_BIN_DIR}: install the Debian package containernetworking-plugins`);
  }
  const netns = `vmpodbench-node-${tag}`;
  const bridge = `vmpb${tag}`;
  const confDir = join(dir, "net.d");
  await mkdir(confDir);
  const conflist = {
    cniVersion: "1.0.0",
    name: `vmpod-bench-${tag}`,
    plugins: [
      {
        type: "bridge",
        bridge,
        isGateway: true,
        ipMasq: true,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          dataDir: join(dir, "ipam"),
          ranges: [[{ subnet: `${SUBNET_PREFIX}.0/24`, rangeStart: `${SUBNET_PREFIX}.10`, rangeEnd: `${SUBNET_PREFIX}.99`, gateway: `${SUBNET_PREFIX}.1` }]],
          routes: [{ dst: "0.0.0.0/0" }],
        },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
  await writeFile(join(confDir, "10-bench.conflist"), JSON.stringify(conflist, null, 2));
  await createNetns(netns);
  undo.push(`delete the node's netns ${netns}`, () => removeNetns(netns));
  return {
    netns,
    bridge,
    cniToml: `[cni]\nconf_dir = "${confDir}"\nbin_dirs = ["${CNI_BIN_DIR}"]\ncache_dir = "${join(dir, "cni")}"\n`,
  };
}

/**
 * A plain netns `name` whose eth0 (at `address`/24) is a veth whose other
 * end, `hostEnd`, is a port of the node's bridge. The bridge must exist.
 */
export async function addPlainNetns(undo: Rollback, node: BenchNode, name: string, hostEnd: string, address: string): Promise<void> {
  await createNetns(name);
  // Deleting the netns destroys eth0, and with it its peer on the bridge.
  undo.push(`delete the plain netns ${name}`, () => removeNetns(name));
  try {
    await run("ip", ["-n", node.netns, "link", "add", hostEnd, "type", "veth", "peer", "name", "eth0", "netns", name]);
    await run("ip", ["-n", node.netns, "link", "set", hostEnd, "master", node.bridge, "up"]);
    await run("ip", ["-n", name, "addr", "add", `${address}/24`, "dev", "eth0"]);
    await run("ip", ["-n", name, "link", "set", "eth0", "up"]);
  } catch (err) {
    throw wrap(`plain netns ${name} on ${node.bridge}`, err);
  }
}

/** Runs a command to completion inside a named netns; returns its stdout. */
export async function inNetns(netns: string, args: readonly string[]): Promise<string> {
  return (await run("ip", ["netns", "exec", netns, ...args])).stdout;
}

/**
 * Starts a long-running command inside a named netns, in a process group of
 * its own (`ip netns exec` becomes the command), and pushes its end: the
 * whole group killed and waited for.
 */
export async function spawnInNetns(undo: Rollback, netns: string, args: readonly string[]): Promise<void> {
  const child = spawn("ip", ["netns", "exec", netns, ...args], { stdio: "ignore", detached: true });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", (err) => reject(new VmpodError("Internal", `start ${args.join(" ")} in ${netns}`, { cause: err })));
  });
  const pgid = child.pid as number;
  undo.push(`stop ${args.join(" ")} in ${netns}`, async () => {
    killGroup(pgid);
    await exited;
    await waitGroupGone(pgid, 5000);
  });
}

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, "SIGKILL");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
  }
}

/** Waits until no process of the group is left (its orphans reaped too). */
async function waitGroupGone(pgid: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      process.kill(-pgid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ESRCH") return;
      throw err;
    }
    if (Date.now() > deadline) throw new VmpodError("DeadlineExceeded", `process group ${pgid} still has processes after SIGKILL`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
