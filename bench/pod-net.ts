/**
 * pod-net: TCP throughput of pods in VMs on a CNI network (bridge,
 * host-local, portmap; a tap in the pod's netns joined to the veth by TC
 * redirects, QEMU's virtio-net on the tap, no vhost), next to plain network
 * namespaces on the same bridge, in the same run. The daemon runs in a
 * network namespace standing for the node (net-node.ts), the registry is
 * forwarded into it. One tool on both sides of every comparison: busybox's
 * nc listening and writing to /dev/null, and `dd if=/dev/zero | nc` sending.
 * A client in a guest is timed there (/proc/uptime); one on the node, around
 * its process. Sizes are found in the run: each transfer lasts about
 * VMPOD_BENCH_NET_SECONDS (3).
 *
 *   pod_to_pod_mbps    pod VM → pod VM     floor: plain netns → plain netns on the same bridge
 *   host_to_pod_mbps   node → pod VM       floor: node → plain netns on the same bridge
 */
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startDaemon, type Daemon } from "../e2e/daemon.js";
import { forwardIntoNetns } from "../e2e/netns-forward.js";
import { VmpodError, wrap } from "../src/common/errors.js";
import { Rollback } from "../src/common/rollback.js";
import { chooseAccel } from "../src/hypervisor/accel.js";
import { netnsExists, netnsName, removeNetns } from "../src/network/netns.js";
import { pushBusybox } from "../test/helpers/registry/images.js";
import { startRegistry } from "../test/helpers/registry/server.js";
import { containerConfig, podConfig } from "./cri-daemon.js";
import { SUBNET_PREFIX, addPlainNetns, inNetns, makeNode, spawnInNetns, type BenchNode } from "./net-node.js";
import { emit, median } from "./report.js";

const RUNS = Number(process.env.VMPOD_BENCH_RUNS ?? 3);
const TARGET_SECONDS = Number(process.env.VMPOD_BENCH_NET_SECONDS ?? 3);
const PORT = 5001;
const BLOCK = 65536;
/** The first probe: 1 MiB, multiplied by 8 until a transfer lasts half a second. */
const PROBE_BLOCKS = 16;
const MAX_BLOCKS = 65536;
const BUSYBOX = "/bin/busybox";

/** A listener that never sees EOF on its stdin (a FIFO held open read-write): busybox nc half-closes at stdin's EOF, which ends the client's transfer at once. */
function serverScript(fifo: string): string {
  return `${BUSYBOX} mkfifo ${fifo} && exec 3<>${fifo} && while :; do ${BUSYBOX} nc -l -p ${PORT} <&3 >/dev/null || ${BUSYBOX} sleep 0.2; done`;
}

/** Waits (up to 10 s) for a TCP socket listening on PORT in the caller's netns, IPv4 or IPv6. */
function waitListeningScript(): string {
  const hexPort = PORT.toString(16).toUpperCase().padStart(4, "0");
  return (
    `n=0; until ${BUSYBOX} grep -qsE ':${hexPort} 0+:0000 0A' /proc/net/tcp /proc/net/tcp6; do ` +
    `n=$((n+1)); if [ $n -ge 200 ]; then echo "nothing listens on port ${PORT}" >&2; exit 1; fi; ${BUSYBOX} sleep 0.05; done`
  );
}

/** Sends `blocks` × 64 KiB of zeros; prints nc's status and /proc/uptime before and after; exits with nc's status. */
function clientScript(ip: string, blocks: number): string {
  return (
    `read t0 x </proc/uptime; ${BUSYBOX} dd if=/dev/zero bs=${BLOCK} count=${blocks} | ${BUSYBOX} nc -w 5 ${ip} ${PORT}; ` +
    `rc=$?; read t1 x </proc/uptime; echo "$rc $t0 $t1"; exit $rc`
  );
}

/** One direction of traffic, client to server. */
interface Path {
  readonly what: string;
  /** Sends `blocks` × 64 KiB once; the seconds it took where the client ran. */
  transfer(blocks: number): Promise<number>;
}

/** Runs `script` in a running container through ExecSync; its stdout, or an error with its stderr. */
async function execIn(daemon: Daemon, containerId: string, script: string, timeoutS: number): Promise<string> {
  const r = await daemon.client.runtime.execSync({ containerId, cmd: [BUSYBOX, "sh", "-c", script], timeout: BigInt(timeoutS) }, { timeoutMs: (timeoutS + 30) * 1000 });
  const stdout = Buffer.from(r.stdout).toString();
  if (r.exitCode !== 0) throw new VmpodError("Internal", `exec in ${containerId.slice(0, 12)} exited with ${r.exitCode}: ${Buffer.from(r.stderr).toString().trim()} ${stdout.trim()}`);
  return stdout;
}

/** The guest-timed client: seconds between the two /proc/uptime readings, never more than the host saw around the exec. */
function guestClient(daemon: Daemon, containerId: string, ip: string, waitListening: () => Promise<void>, what: string): Path {
  return {
    what,
    async transfer(blocks) {
      await waitListening();
      const t = performance.now();
      const out = await execIn(daemon, containerId, clientScript(ip, blocks), transferTimeout(blocks));
      const wall = (performance.now() - t) / 1000;
      const [rc, t0, t1] = out.trim().split("\n").at(-1)?.split(" ").map(Number) ?? [];
      if (rc !== 0 || t0 === undefined || t1 === undefined || !(t1 >= t0)) throw new VmpodError("Internal", `${what}: the client printed ${JSON.stringify(out)}`);
      const seconds = t1 - t0;
      // /proc/uptime counts hundredths; a guest clock running fast would flatter the VM.
      if (seconds > wall + 0.02) throw new VmpodError("Internal", `${what}: the guest counted ${seconds} s inside an exec the host timed at ${wall.toFixed(3)} s`);
      return Math.max(seconds, 0.01);
    },
  };
}

/** The node-side client: timed around the process running it in `netns`. */
function nodeClient(netns: string, ip: string, waitListening: () => Promise<void>, what: string): Path {
  return {
    what,
    async transfer(blocks) {
      await waitListening();
      const t = performance.now();
      try {
        await inNetns(netns, [BUSYBOX, "sh", "-c", clientScript(ip, blocks)]);
      } catch (err) {
        throw wrap(what, err);
      }
      return (performance.now() - t) / 1000;
    },
  };
}

function transferTimeout(blocks: number): number {
  return Math.max(60, Math.ceil(TARGET_SECONDS * 20), Math.ceil((blocks * BLOCK) / 1e5));
}

/** The number of blocks that makes one transfer on `path` last about TARGET_SECONDS. */
async function sizeFor(path: Path): Promise<number> {
  await path.transfer(PROBE_BLOCKS); // warm-up: under TCG the first run pays for translating the code
  for (let blocks = PROBE_BLOCKS; ; blocks *= 8) {
    const seconds = await path.transfer(blocks);
    if (seconds >= 0.5 || blocks * 8 > MAX_BLOCKS) return Math.min(MAX_BLOCKS, Math.max(blocks, Math.round((blocks * TARGET_SECONDS) / seconds)));
  }
}

function mbps(blocks: number, seconds: number): number {
  return (blocks * BLOCK * 8) / 1e6 / seconds;
}

function bytesNote(blocks: number): string {
  const bytes = blocks * BLOCK;
  return `${bytes} bytes (${(bytes / 2 ** 20).toFixed(1)} MiB)`;
}

async function startPod(daemon: Daemon, podIds: string[], name: string, image: string, command: string[]): Promise<{ containerId: string; ip: string }> {
  const rt = daemon.client.runtime;
  const config = podConfig(name, daemon.logDir);
  const { podSandboxId } = await rt.runPodSandbox({ config });
  podIds.push(podSandboxId);
  const { containerId } = await rt.createContainer({ podSandboxId, config: containerConfig(name, image, command), sandboxConfig: config });
  await rt.startContainer({ containerId });
  const ip = (await rt.podSandboxStatus({ podSandboxId })).status?.network?.ip ?? "";
  if (!ip.startsWith(`${SUBNET_PREFIX}.`)) throw new VmpodError("Internal", `pod ${name} got address ${JSON.stringify(ip)}, not one of ${SUBNET_PREFIX}.0/24`);
  return { containerId, ip };
}

export async function run(): Promise<void> {
  await using undo = new Rollback();
  const tag = randomBytes(3).toString("hex");
  const scratch = await mkdtemp(join(tmpdir(), "vmpod-bench-net-"));
  undo.push("remove the scratch directory", () => rm(scratch, { recursive: true, force: true }));
  const accel = await chooseAccel("auto");

  const node: BenchNode = await makeNode(undo, tag, scratch);
  const registry = await startRegistry();
  undo.push("stop the registry", () => registry.stop());
  const pushed = await pushBusybox(registry, { repository: "bench/busybox", tag: "net" });
  // The registry listens on the bench's loopback; the daemon pulls from the node's.
  const forward = await forwardIntoNetns(node.netns, Number(registry.host.split(":")[1]), scratch);
  undo.push("close the registry's forward", () => forward.close());

  // Runs after the daemon's own teardown: a pod netns it left is removed, and reported.
  const podIds: string[] = [];
  undo.push("check the pods' network namespaces are gone", async () => {
    const left: string[] = [];
    for (const id of podIds) {
      if (await netnsExists(netnsName(id))) left.push(netnsName(id));
    }
    for (const name of left) await removeNetns(name);
    if (left.length > 0) throw new VmpodError("Internal", `the daemon left the pod network namespaces ${left.join(", ")} (now removed)`);
  });
  const daemon = await startDaemon({ netns: node.netns, extraToml: node.cniToml });
  undo.push("stop the daemon and its pods", () => daemon.dispose());
  await daemon.client.images.pullImage({ image: { image: pushed.reference } });

  const server = await startPod(daemon, podIds, "net-server", pushed.reference, [BUSYBOX, "sh", "-c", serverScript("/tmp/hold")]);
  const client = await startPod(daemon, podIds, "net-client", pushed.reference, [BUSYBOX, "sleep", "100000"]);

  // Plain namespaces on the bridge the first pod's ADD made, above host-local's range.
  const plainServer = { netns: `vmpodbench-a-${tag}`, ip: `${SUBNET_PREFIX}.200` };
  const plainClient = { netns: `vmpodbench-b-${tag}`, ip: `${SUBNET_PREFIX}.201` };
  await addPlainNetns(undo, node, plainServer.netns, `vpa${tag}`, plainServer.ip);
  await addPlainNetns(undo, node, plainClient.netns, `vpb${tag}`, plainClient.ip);
  await spawnInNetns(undo, plainServer.netns, [BUSYBOX, "sh", "-c", serverScript(join(scratch, "hold"))]);

  const podListening = async () => {
    await execIn(daemon, server.containerId, waitListeningScript(), 30);
  };
  const plainListening = async () => {
    await inNetns(plainServer.netns, [BUSYBOX, "sh", "-c", waitListeningScript()]);
  };
  const paths = {
    podToPod: guestClient(daemon, client.containerId, server.ip, podListening, "pod VM → pod VM"),
    hostToPod: nodeClient(node.netns, server.ip, podListening, "node → pod VM"),
    plainToPlain: nodeClient(plainClient.netns, plainServer.ip, plainListening, "plain netns → plain netns"),
    hostToPlain: nodeClient(node.netns, plainServer.ip, plainListening, "node → plain netns"),
  };
  type Name = keyof typeof paths;
  const names = Object.keys(paths) as Name[];
  const blocks = {} as Record<Name, number>;
  const results = {} as Record<Name, number[]>;
  for (const name of names) {
    blocks[name] = await sizeFor(paths[name]);
    results[name] = [];
  }
  // Interleaved, so that a noisy moment of the shared machine lands on every path alike.
  for (let i = 0; i < RUNS; i++) {
    for (const name of names) results[name].push(mbps(blocks[name], await paths[name].transfer(blocks[name])));
  }

  const runs = (name: Name) => `[${results[name].map((v) => v.toFixed(1)).join(", ")}]`;
  const common = `TCP through the CNI bridge, busybox nc (dd of 64 KiB blocks of zeros → nc → nc -l > /dev/null); median of ${RUNS} under ${accel.accel}`;
  emit({
    bench: "pod-net",
    metric: "pod_to_pod_mbps",
    value: median(results.podToPod),
    unit: "Mbit/s",
    floor: median(results.plainToPlain),
    note:
      `${common}; ours: a client pod VM to a server pod VM, ${bytesNote(blocks.podToPod)} a run, timed in the client's guest (/proc/uptime), runs ${runs("podToPod")}; ` +
      `floor: two plain netns on the same bridge (veth pairs), ${bytesNote(blocks.plainToPlain)} a run, timed around the client's process on the node, runs ${runs("plainToPlain")}`,
  });
  emit({
    bench: "pod-net",
    metric: "host_to_pod_mbps",
    value: median(results.hostToPod),
    unit: "Mbit/s",
    floor: median(results.hostToPlain),
    note:
      `${common}; ours: the node's netns to a server pod VM, ${bytesNote(blocks.hostToPod)} a run, runs ${runs("hostToPod")}; ` +
      `floor: the node's netns to a plain netns on the same bridge, ${bytesNote(blocks.hostToPlain)} a run, runs ${runs("hostToPlain")}; both timed around the client's process on the node`,
  });
}
