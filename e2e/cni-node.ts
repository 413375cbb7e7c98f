/**
 * A node for end-to-end tests whose pods get a network: a network namespace
 * standing for the node, a CNI configuration of Debian's bridge and
 * host-local plugins on a bridge and /24 of its own, the test registry
 * (with a busybox image) forwarded into the namespace, and a vmpod daemon
 * running there. `dispose` removes it all and checks that no pod's state,
 * process, mount or network namespace is left.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { assertNothingLeft } from "../test/helpers/leaks.js";
import { pushBusybox, type PushedImage } from "../test/helpers/registry/images.js";
import { startRegistry, type RunningRegistry } from "../test/helpers/registry/server.js";
import { startDaemon, type Daemon } from "./daemon.js";
import { podNetnses, sh } from "./helpers.js";
import { forwardIntoNetns, type Forward } from "./netns-forward.js";

export interface CniNodeOptions {
  /** Names the namespace (`vmpodtest-<name>-<tag>`), the temporary directory, the network and the image's tag. */
  readonly name: string;
  /** The bridge's name before the random tag (at most 9 characters: interface names have 15). */
  readonly bridgePrefix: string;
  /** The first two octets of the pods' /24; the third is random. */
  readonly subnetBase: string;
  /** Pods also get a default route through the bridge. */
  readonly defaultRoute?: boolean;
  /** More keys of the daemon's [runtime] section. */
  readonly runtimeToml?: string;
  /** More daemon configuration, appended after its [cni] section; given the node's directory. */
  readonly extraToml?: (dir: string) => string;
}

export interface CniNode {
  /** The network namespace standing for the node. */
  readonly node: string;
  /** The node's temporary directory (CNI configuration, cache and IPAM, forwards). */
  readonly dir: string;
  /** The pods' /24 without its last octet: "10.253.17". */
  readonly subnetPrefix: string;
  readonly registry: RunningRegistry;
  readonly image: PushedImage;
  readonly daemon: Daemon;
  dispose(): Promise<void>;
}

export async function startCniNode(options: CniNodeOptions): Promise<CniNode> {
  const tag = randomBytes(3).toString("hex");
  const node = `vmpodtest-${options.name}-${tag}`;
  const netnsBefore = await podNetnses();
  const dir = await mkdtemp(join(tmpdir(), `vmpod-e2e-${options.name}-`));
  let registry: RunningRegistry | undefined;
  let forward: Forward | undefined;
  let daemon: Daemon | undefined;
  const dispose = async () => {
    const root = daemon?.root;
    await daemon?.dispose();
    await forward?.close();
    await registry?.stop();
    await sh("ip", ["netns", "del", node]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    if (root) await assertNothingLeft(root);
    assert.deepEqual((await podNetnses()).filter((n) => !netnsBefore.includes(n)), [], "no pod network namespace is left");
  };
  try {
    const confDir = join(dir, "net.d");
    await mkdir(confDir);
    const subnetPrefix = `${options.subnetBase}.${randomBytes(1)[0] ?? 9}`;
    const subnet = `${subnetPrefix}.0/24`;
    const ipam = { type: "host-local", dataDir: join(dir, "ipam"), ranges: [[{ subnet }]], ...(options.defaultRoute ? { routes: [{ dst: "0.0.0.0/0" }] } : {}) };
    await writeFile(
      join(confDir, `10-${options.name}.conflist`),
      JSON.stringify({ cniVersion: "1.0.0", name: `vmpod-${options.name}-${tag}`, plugins: [{ type: "bridge", bridge: `${options.bridgePrefix}${tag}`, isGateway: true, ipam }] }),
    );
    await sh("ip", ["netns", "add", node]);
    await sh("ip", ["-n", node, "link", "set", "lo", "up"]);
    registry = await startRegistry();
    const image = await pushBusybox(registry, { repository: "e2e/busybox", tag: options.name });
    forward = await forwardIntoNetns(node, Number(registry.host.split(":")[1]), dir);
    daemon = await startDaemon({
      netns: node,
      ...(options.runtimeToml ? { runtimeToml: options.runtimeToml } : {}),
      extraToml: `[cni]\nconf_dir = "${confDir}"\nbin_dirs = ["/usr/lib/cni"]\ncache_dir = "${join(dir, "cni")}"\n${options.extraToml?.(dir) ?? ""}`,
    });
    return { node, dir, subnetPrefix, registry, image, daemon, dispose };
  } catch (err) {
    await dispose().catch(() => undefined);
    throw err;
  }
}
