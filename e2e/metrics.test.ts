/**
 * Operating vmpod end to end: a real daemon with its metrics endpoint on a
 * port of its choosing (it logs which) and debug mode on, its pods given a
 * network by Debian's CNI plugins (bridge, host-local). The daemon runs in
 * a network namespace standing for the node, as in network.test.ts; the
 * endpoint is on that namespace's loopback and is scraped from inside it.
 *
 * After a VM pod has run a container, /metrics serves every vmpod family
 * with values that fit what happened (the calls made, the boot and its
 * phases, the network set-up, the pull and its bytes, the pod and its
 * container by state, the pod's QEMU memory and CPU time); /healthz says
 * 200; a pod whose VM outlived a kill -9 of the daemon is measured by the
 * next one; in debug mode the guest's console and agent log reach the
 * daemon's log tagged with the pod, and the pod's verbose status names the
 * console file. Nothing is left at the end.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { status as grpcStatus } from "@grpc/grpc-js";
import type { PushedImage } from "../test/helpers/registry/images.js";
import { families, parseExposition, valueOf, VMPOD_FAMILIES, type Sample } from "../test/unit/metrics/samples.js";
import { startCniNode, type CniNode } from "./cni-node.js";
import type { Daemon } from "./daemon.js";
import { sh, until } from "./helpers.js";

/** The daemon's log lines that are JSON objects. */
function logLines(output: string): Record<string, unknown>[] {
  return output.split("\n").flatMap((l) => {
    if (!l.startsWith("{")) return [];
    try {
      return [JSON.parse(l) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

describe("metrics, /healthz and logs end to end (a real daemon in debug mode, VM pods with CNI)", function () {
  this.timeout(900_000);
  const tag = randomBytes(3).toString("hex");
  let cniNode: CniNode | undefined;
  let node: string;
  let image: PushedImage;
  let daemon: Daemon;
  let address: string;

  before(async () => {
    cniNode = await startCniNode({
      name: "metrics",
      bridgePrefix: "vmpm",
      subnetBase: "10.251",
      defaultRoute: true,
      runtimeToml: "enable_debug = true",
      extraToml: () => `[metrics]\naddress = "127.0.0.1:0"\n`,
    });
    ({ node, image, daemon } = cniNode);
    // Port 0: the daemon says which port it took.
    address = await until("the metrics address in the daemon's log", async () => {
      const line = logLines(daemon.output()).find((l) => l.msg === "metrics listening");
      return typeof line?.address === "string" ? line.address : undefined;
    });
  });

  after(async () => {
    await cniNode?.dispose();
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") process.stderr.write(`daemon output:\n${daemon.output().slice(-8000)}\n`);
  });

  /** An HTTP GET from inside the node's namespace, where the endpoint listens. */
  async function get(path: string): Promise<{ status: number; contentType: string; body: string }> {
    const script = `fetch(${JSON.stringify(`http://${address}${path}`)}, { signal: AbortSignal.timeout(10000) }).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, contentType: r.headers.get("content-type"), body: await r.text() })))`;
    return JSON.parse(await sh("ip", ["netns", "exec", node, process.execPath, "-e", script])) as { status: number; contentType: string; body: string };
  }

  async function scrape(): Promise<{ text: string; samples: Sample[] }> {
    const res = await get("/metrics");
    assert.equal(res.status, 200);
    assert.match(res.contentType, /^text\/plain/);
    return { text: res.body, samples: parseExposition(res.body) };
  }

  /** A sample's value, 0 when the series is not there yet. */
  const v = (s: Sample[], name: string, labels: Record<string, string> = {}) => valueOf(s, name, labels) ?? 0;

  const podConfig = (name: string) => ({
    metadata: { name, uid: `uid-${name}-${tag}`, namespace: "e2e-metrics", attempt: 0 },
    hostname: name,
    logDirectory: join(daemon.logDir, name),
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
  });
  const container = (name: string, command: string[]) => ({
    metadata: { name, attempt: 0 },
    image: { image: image.reference },
    command,
    logPath: `${name}.log`,
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
  });

  it("logs the address it took for port 0, and answers /healthz with 200 once it serves CRI", async () => {
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(address, "127.0.0.1:0");
    const health = await get("/healthz");
    assert.equal(health.status, 200);
    assert.equal(health.body, "ok\n");
    assert.equal((await get("/nothing")).status, 404);
  });

  it("serves every family with what a VM pod that ran a container did: calls, boot phases, network, pull, states, QEMU memory and CPU", async () => {
    const rt = daemon.client.runtime;
    const before = (await scrape()).samples;
    await daemon.client.images.pullImage({ image: { image: image.reference } });
    const config = podConfig("measured");
    const { podSandboxId: pod } = await rt.runPodSandbox({ config });
    const { containerId } = await rt.createContainer({ podSandboxId: pod, config: container("sleeper", ["sh", "-c", "echo up; exec sleep 100000"]), sandboxConfig: config });
    await rt.startContainer({ containerId });
    const ran = await rt.execSync({ containerId, cmd: ["echo", "ran"], timeout: 60n });
    assert.equal(Buffer.from(ran.stdout).toString(), "ran\n");
    await assert.rejects(rt.containerStatus({ containerId: "no-such-container" }), (e: unknown) => (e as { code?: number }).code === grpcStatus.NOT_FOUND);

    const { text, samples: s } = await scrape();
    const f = families(text);
    for (const name of VMPOD_FAMILIES) {
      assert.ok(f.has(name), `family ${name} is served`);
      assert.ok((f.get(name)?.help.length ?? 0) > 20, `family ${name} says what it is`);
    }
    const delta = (name: string, labels: Record<string, string> = {}) => v(s, name, labels) - v(before, name, labels);

    // CRI calls, by method and code; errors by code; latencies.
    for (const method of ["PullImage", "RunPodSandbox", "CreateContainer", "StartContainer", "ExecSync"]) {
      assert.equal(delta("vmpod_cri_requests_total", { method, code: "OK" }), 1, `${method} counted once`);
      assert.equal(delta("vmpod_cri_request_duration_seconds_count", { method }), 1, `${method} timed once`);
    }
    assert.equal(delta("vmpod_cri_requests_total", { method: "ContainerStatus", code: "NOT_FOUND" }), 1);
    assert.ok(delta("vmpod_cri_errors_total", { code: "NOT_FOUND" }) >= 1);
    const runSeconds = delta("vmpod_cri_request_duration_seconds_sum", { method: "RunPodSandbox" });

    // The boot, phase by phase: all there, adding up, within RunPodSandbox's own time.
    assert.equal(delta("vmpod_vm_boot_seconds_count"), 1);
    const bootSeconds = delta("vmpod_vm_boot_seconds_sum");
    let phases = 0;
    for (const phase of ["prepare", "vm_start", "agent_connect", "sandbox"]) {
      assert.equal(delta("vmpod_vm_boot_phase_seconds_count", { phase }), 1, `phase ${phase}`);
      phases += delta("vmpod_vm_boot_phase_seconds_sum", { phase });
    }
    assert.ok(Math.abs(phases - bootSeconds) < 0.01, `phases ${phases} s add up to the boot's ${bootSeconds} s`);
    assert.ok(delta("vmpod_vm_boot_phase_seconds_sum", { phase: "agent_connect" }) > 0.1, "the guest takes a while to answer");
    assert.ok(bootSeconds > 0.2 && bootSeconds <= runSeconds, `boot ${bootSeconds} s within RunPodSandbox's ${runSeconds} s`);

    // The pod's network, from CNI.
    assert.equal(delta("vmpod_network_setup_seconds_count", { outcome: "ok" }), 1);
    const netSeconds = delta("vmpod_network_setup_seconds_sum", { outcome: "ok" });
    assert.ok(netSeconds > 0 && netSeconds < runSeconds, `network set-up ${netSeconds} s`);

    // The pull: one, and its bytes (the manifest at least; the layers when first pulled).
    assert.equal(delta("vmpod_image_pull_seconds_count", { outcome: "ok" }), 1);
    const layerBytes = image.image.layers.reduce((n, l) => n + l.size, 0);
    assert.ok(delta("vmpod_image_pull_bytes_total") > 0, "the manifest's bytes at least");
    assert.ok(v(s, "vmpod_image_pull_bytes_total") >= layerBytes, `the layers' ${layerBytes} bytes were counted when first pulled`);

    // States, from the runtime at scrape time.
    assert.equal(delta("vmpod_pods", { state: "ready", handler: "vmpod" }), 1);
    assert.equal(delta("vmpod_containers", { state: "running" }), 1);

    // The pod's QEMU: resident memory (a guest running node takes well over 20 MiB) and CPU time (a TCG boot burns seconds).
    const labels = { pod_id: pod, namespace: "e2e-metrics", pod: "measured" };
    const rss = v(s, "vmpod_pod_qemu_resident_memory_bytes", labels);
    assert.ok(rss > 20 * 2 ** 20 && rss < 8 * 2 ** 30, `QEMU RSS ${rss} bytes`);
    const cpu = v(s, "vmpod_pod_qemu_cpu_seconds_total", labels);
    assert.ok(cpu > 0.1, `QEMU CPU ${cpu} s`);
    const info = JSON.parse((await rt.podSandboxStatus({ podSandboxId: pod, verbose: true })).info.info ?? "{}") as { qemuPid?: number };
    const status = await readFile(`/proc/${info.qemuPid}/status`, "utf8");
    const procRss = Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1]) * 1024;
    assert.ok(Math.abs(procRss - rss) < Math.max(rss, procRss) / 2, `the RSS reported (${rss}) is QEMU's (${procRss}, pid ${info.qemuPid})`);

    // Node's own families, prefixed.
    assert.ok(v(s, "vmpod_process_resident_memory_bytes") > 0);

    // A stopped pod: not ready, its container exited, its QEMU gone from the families.
    await rt.stopPodSandbox({ podSandboxId: pod });
    const stopped = (await scrape()).samples;
    assert.equal(v(stopped, "vmpod_pods", { state: "ready", handler: "vmpod" }) - v(before, "vmpod_pods", { state: "ready", handler: "vmpod" }), 0);
    assert.equal(v(stopped, "vmpod_pods", { state: "notready", handler: "vmpod" }) - v(before, "vmpod_pods", { state: "notready", handler: "vmpod" }), 1);
    assert.equal(valueOf(stopped, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: pod }), undefined);
    await rt.removePodSandbox({ podSandboxId: pod });
  });

  it("measures the QEMU of a pod taken over after the daemon's kill -9 and restart", async () => {
    const rt = () => daemon.client.runtime;
    await daemon.client.images.pullImage({ image: { image: image.reference } });
    const config = podConfig("survivor");
    const { podSandboxId: pod } = await rt().runPodSandbox({ config });
    const { qemuPid } = JSON.parse((await rt().podSandboxStatus({ podSandboxId: pod, verbose: true })).info.info ?? "{}") as { qemuPid?: number };
    const listening = () => logLines(daemon.output()).filter((l) => l.msg === "metrics listening");
    const before = listening().length;
    await daemon.kill9();
    await daemon.restart();
    address = await until("the restarted daemon's metrics address", async () => {
      const lines = listening();
      return lines.length > before && typeof lines.at(-1)?.address === "string" ? (lines.at(-1)?.address as string) : undefined;
    });
    assert.equal((await get("/healthz")).status, 200);
    const after = JSON.parse((await rt().podSandboxStatus({ podSandboxId: pod, verbose: true })).info.info ?? "{}") as { qemuPid?: number };
    assert.equal(after.qemuPid, qemuPid, "the pod's VM is the one it had");
    const s = (await scrape()).samples;
    assert.equal(valueOf(s, "vmpod_pods", { state: "ready", handler: "vmpod" }), 1);
    const rss = valueOf(s, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: pod }) ?? 0;
    assert.ok(rss > 20 * 2 ** 20, `QEMU RSS ${rss} bytes after the restart`);
    assert.ok((valueOf(s, "vmpod_pod_qemu_cpu_seconds_total", { pod_id: pod }) ?? 0) > 0.1);
    // A new daemon has counted nothing yet of the boot it did not see.
    assert.equal(valueOf(s, "vmpod_vm_boot_seconds_count"), 0);
    await rt().stopPodSandbox({ podSandboxId: pod });
    await rt().removePodSandbox({ podSandboxId: pod });
  });

  it("in debug mode copies the guest's console and agent log into the daemon's log, tagged with the pod; the pod's verbose status names its console file", async () => {
    const rt = daemon.client.runtime;
    await daemon.client.images.pullImage({ image: { image: image.reference } });
    const config = podConfig("traced");
    const { podSandboxId: pod } = await rt.runPodSandbox({ config });
    const verbose = await rt.podSandboxStatus({ podSandboxId: pod, verbose: true });
    const info = JSON.parse(verbose.info.info ?? "{}") as { consoleLog?: string; stateDir?: string; qemuPid?: number };
    assert.ok(info.consoleLog?.startsWith(join(daemon.root, "state")), `the console file ${info.consoleLog} is under the daemon's state dir`);
    assert.ok(info.stateDir && info.consoleLog?.startsWith(info.stateDir + "/"), "in the pod's own state dir");
    assert.ok(typeof info.qemuPid === "number" && info.qemuPid > 1);
    const file = await readFile(info.consoleLog ?? "", "utf8");
    // "sandbox created": a pod's own line whether its VM booted or was restored from a template (whose agent started before the save).
    assert.match(file, /"msg":"sandbox created"/, "the agent's log is in the console file");

    const copied = await until("the agent's line in the daemon's log", async () =>
      logLines(daemon.output()).find((l) => l.msg === "guest log" && l.pod === pod && (l.guest as { msg?: string } | undefined)?.msg === "sandbox created"),
    );
    assert.equal(copied.level, "debug");
    assert.equal(copied.component, "guest");
    const lines = logLines(daemon.output());
    // Debug level is on, and each layer says which it is.
    assert.ok(lines.some((l) => l.level === "debug" && l.msg === "cri call"), "polled calls are logged at debug");
    const run = lines.find((l) => l.msg === "cri call" && l.method === "RunPodSandbox" && l.pod === pod);
    assert.equal(run?.component, "cri", "the RunPodSandbox line names the new pod and its layer");
    assert.ok(lines.some((l) => l.component === "sandbox" && l.pod === pod), "the sandbox layer's lines about the pod carry it");
    assert.ok(lines.some((l) => l.component === "network" && l.pod === pod), "the network layer's lines about the pod carry it");
    for (const l of lines.filter((x) => x.component === "guest")) assert.equal(typeof l.pod, "string", `guest line without its pod: ${JSON.stringify(l)}`);

    await rt.stopPodSandbox({ podSandboxId: pod });
    await rt.removePodSandbox({ podSandboxId: pod });
  });
});
