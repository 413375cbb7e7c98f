/**
 * install and uninstall end to end in a temporary host root, with fakes at
 * the installer's interfaces: systemd records the calls and starts a CRI
 * daemon on the socket under the root (the installer's real CRI client asks
 * it for RuntimeReady), and the cluster is in memory.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kindOf } from "../../../src/common/errors.js";
import { createLogger, type Logger } from "../../../src/common/log.js";
import { install, labelWhenKubeletUsesVmpod, runUntilTerminated, uninstall, type InstallerDeps } from "../../../src/installer/installer.js";
import { HostRoot } from "../../../src/installer/layout.js";
import type { PayloadSource } from "../../../src/installer/payload.js";
import { FakeCriDaemon, FakeKubeApi, FakeSystemd } from "./fakes.js";
import { makeHostRoot, makeSourcePackage, snapshot } from "./trees.js";

const VMPOD = "vmpod://0.1.0";
const CONTAINERD = "containerd://1.7.24";
const MANAGED = { "app.kubernetes.io/managed-by": "vmpod-installer" };

function recordingLogger(): { logger: Logger; lines: () => { level: string; msg: string }[] } {
  const out: string[] = [];
  return { logger: createLogger({ level: "debug", sink: { write: (l) => out.push(l) } }), lines: () => out.map((l) => JSON.parse(l) as { level: string; msg: string }) };
}

describe("installer: install and uninstall with fake systemd and cluster", function () {
  this.timeout(30_000);
  let scratch: string;
  let rootDir: string;
  let source: PayloadSource;
  let daemon: FakeCriDaemon;
  let systemd: FakeSystemd;
  let kube: FakeKubeApi;
  let log: ReturnType<typeof recordingLogger>;

  const deps = (nodeName = "node-1", commands: FakeSystemd = systemd): InstallerDeps => ({ host: new HostRoot(rootDir), commands, cluster: { api: kube, nodeName }, logger: log.logger });

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), "vmpod-installer-"));
    rootDir = join(scratch, "host");
    await makeHostRoot(rootDir);
    source = await makeSourcePackage(join(scratch, "package"));
    daemon = new FakeCriDaemon(join(rootDir, "run/vmpod/vmpod.sock"));
    systemd = new FakeSystemd(daemon);
    kube = new FakeKubeApi();
    log = recordingLogger();
  });
  afterEach(async () => {
    await daemon.stop();
    await rm(scratch, { recursive: true, force: true });
  });

  it("installs, starts vmpod, waits for it, creates the RuntimeClasses and labels a node whose kubelet uses vmpod; a repeat only makes sure vmpod runs", async () => {
    kube.addNode("node-1", VMPOD);
    const outcome = await install(deps(), { source, readyTimeoutMs: 10_000 });
    assert.deepEqual(systemd.calls, ["daemon-reload", "enable vmpod.service", "restart vmpod.service"]);
    assert.ok(daemon.running);
    assert.deepEqual(outcome.createdRuntimeClasses, ["vmpod", "runc"]);
    assert.equal(outcome.labelled, true);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], "true");

    const vm = kube.runtimeClasses.get("vmpod");
    assert.equal(vm?.handler, "vmpod");
    assert.deepEqual(vm?.overhead?.podFixed, { memory: "384Mi", cpu: "100m" });
    assert.deepEqual(vm?.scheduling?.nodeSelector, { "vmpod.io/runtime": "true" });
    assert.deepEqual(vm?.metadata.labels, { "app.kubernetes.io/part-of": "vmpod", ...MANAGED });
    assert.equal(kube.runtimeClasses.get("runc")?.handler, "runc");
    assert.equal(kube.runtimeClasses.get("runc")?.overhead, undefined);

    systemd.calls.length = 0;
    kube.writes.length = 0;
    const again = await install(deps(), { source, readyTimeoutMs: 10_000 });
    assert.deepEqual(systemd.calls, ["daemon-reload", "enable --now vmpod.service"], "the same build: no restart");
    assert.deepEqual(again.createdRuntimeClasses, []);
    assert.deepEqual(kube.writes, [], "nothing to write in the cluster either");
  });

  it("installs beside another runtime without labelling the node, and labels it once kubelet reports vmpod", async () => {
    kube.addNode("node-1", CONTAINERD);
    const outcome = await install(deps(), { source, readyTimeoutMs: 10_000 });
    assert.equal(outcome.labelled, false);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], undefined);
    assert.ok(log.lines().some((l) => l.msg.startsWith("kubelet does not use vmpod yet")));
    assert.equal(kube.runtimeClasses.size, 2, "the RuntimeClasses exist already; they select labelled nodes only");

    setTimeout(() => kube.nodes.set("node-1", { labels: {}, containerRuntimeVersion: VMPOD }), 300);
    assert.equal(await labelWhenKubeletUsesVmpod(deps(), { timeoutMs: 10_000, intervalMs: 100 }), true);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], "true");
  });

  it("restarts kubelet on its new drop-in when asked, after vmpod is ready, and labels the node once kubelet reports vmpod", async () => {
    kube.addNode("node-1", CONTAINERD);
    const kubelet = new FakeSystemd(daemon);
    const commands = Object.assign(kubelet, {
      async systemctl(args: readonly string[]) {
        await FakeSystemd.prototype.systemctl.call(kubelet, args);
        if (args.join(" ") === "restart kubelet.service") {
          assert.ok(daemon.running, "vmpod runs before kubelet is pointed at it");
          setTimeout(() => kube.nodes.set("node-1", { labels: {}, containerRuntimeVersion: VMPOD }), 200);
        }
      },
    });
    const outcome = await install(deps("node-1", commands), { source, readyTimeoutMs: 10_000, restartKubelet: true, pollIntervalMs: 100 });
    assert.deepEqual(kubelet.calls, ["daemon-reload", "enable vmpod.service", "restart vmpod.service", "restart kubelet.service"]);
    assert.equal(outcome.labelled, true);
  });

  it("fails with DeadlineExceeded saying what vmpod answered when it does not become ready", async () => {
    kube.addNode("node-1", VMPOD);
    daemon.ready = false;
    const err = await install(deps(), { source, readyTimeoutMs: 3_000 }).then(() => assert.fail("installed a daemon that is not ready"), (e: unknown) => e);
    assert.equal(kindOf(err), "DeadlineExceeded");
    assert.match(String(err), /wait for vmpod: .*answered but was not ready \(FakeNotReady: not yet\)/);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], undefined, "no label for a runtime that is not ready");

    await daemon.stop();
    const silent = new FakeSystemd();
    const err2 = await install(deps("node-1", silent), { source, readyTimeoutMs: 1_500 }).then(() => assert.fail("installed without a daemon"), (e: unknown) => e);
    assert.equal(kindOf(err2), "DeadlineExceeded");
    assert.match(String(err2), /does not answer on .*run\/vmpod\/vmpod\.sock/);
  });

  it("reports a failing systemctl with its step", async () => {
    kube.addNode("node-1", VMPOD);
    systemd.failOn = "restart vmpod.service";
    await assert.rejects(install(deps(), { source, readyTimeoutMs: 5_000 }), /^VmpodError: systemd: systemctl restart vmpod.service failed/);
  });

  it("refuses to uninstall from under a kubelet that uses vmpod unless forced; forced, it undoes everything", async () => {
    kube.addNode("node-1", VMPOD);
    const before = await snapshot(rootDir);
    await install(deps(), { source, readyTimeoutMs: 10_000 });
    const installed = await snapshot(rootDir);
    systemd.calls.length = 0;

    const err = await uninstall(deps(), { source }).then(() => assert.fail("uninstalled the runtime kubelet uses"), (e: unknown) => e);
    assert.equal(kindOf(err), "FailedPrecondition");
    assert.match(String(err), /kubelet on node node-1 uses vmpod/);
    assert.deepEqual(systemd.calls, []);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], "true");
    assert.deepEqual(await snapshot(rootDir), installed);

    await uninstall(deps(), { source, force: true });
    assert.deepEqual(systemd.calls, ["disable --now vmpod.service", "daemon-reload"]);
    assert.equal(daemon.running, false);
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], undefined);
    assert.equal(kube.runtimeClasses.size, 0, "the last node deletes the installer's RuntimeClasses");
    // The fake daemon's socket stands for what the real daemon leaves in /run/vmpod.
    await rm(join(rootDir, "run/vmpod"), { recursive: true });
    assert.deepEqual(await snapshot(rootDir), before);
  });

  it("keeps the RuntimeClasses while another node serves vmpod, and never deletes one it did not create", async () => {
    kube.addNode("node-1", CONTAINERD);
    kube.addNode("node-2", VMPOD, { "vmpod.io/runtime": "true" });
    const operators = { apiVersion: "node.k8s.io/v1", kind: "RuntimeClass" as const, metadata: { name: "runc" }, handler: "runc" };
    kube.runtimeClasses.set("runc", operators);
    assert.deepEqual((await install(deps(), { source, readyTimeoutMs: 10_000 })).createdRuntimeClasses, ["vmpod"]);
    assert.equal(kube.runtimeClasses.get("runc"), operators, "an existing RuntimeClass is left as it is");

    await uninstall(deps(), { source });
    assert.deepEqual([...kube.runtimeClasses.keys()].sort(), ["runc", "vmpod"], "node-2 still serves vmpod");
    assert.ok(log.lines().some((l) => l.msg.startsWith("other nodes still serve vmpod")));

    kube.nodes.set("node-2", { labels: { "vmpod.io/runtime": "true" }, containerRuntimeVersion: CONTAINERD });
    await uninstall(deps("node-2"), { source });
    assert.deepEqual([...kube.runtimeClasses.keys()], ["runc"], "the last node deletes only what the installer created");
    assert.equal(kube.nodes.get("node-2")?.labels["vmpod.io/runtime"], undefined);
  });

  it("warns about pods still running, and purges the daemon's data only when none are left", async () => {
    kube.addNode("node-1", CONTAINERD);
    await install(deps(), { source, readyTimeoutMs: 10_000 });
    await mkdir(join(rootDir, "var/lib/vmpod/image"), { recursive: true });
    await writeFile(join(rootDir, "var/lib/vmpod/image/blob"), "x");
    daemon.pods = ["pod-a"];
    await uninstall(deps(), { source, purge: true });
    const warned = log.lines().filter((l) => l.level === "warn").map((l) => l.msg);
    assert.ok(warned.some((m) => m.startsWith("vmpod still has pods")), warned.join("; "));
    assert.ok(warned.some((m) => m.startsWith("not purging")));
    assert.ok(await stat(join(rootDir, "var/lib/vmpod/image/blob")));

    daemon.pods = [];
    await install(deps(), { source, readyTimeoutMs: 10_000 });
    await uninstall(deps(), { source, purge: true });
    await assert.rejects(stat(join(rootDir, "var/lib/vmpod")));
    await assert.rejects(stat(join(rootDir, "run/vmpod")));
  });

  it("installs and uninstalls without a cluster, and restarts kubelet on its removed drop-in when asked", async () => {
    const before = await snapshot(rootDir);
    const host = { host: new HostRoot(rootDir), commands: systemd, logger: log.logger };
    const outcome = await install(host, { source, readyTimeoutMs: 10_000 });
    assert.deepEqual(outcome.createdRuntimeClasses, []);
    assert.equal(outcome.labelled, false);
    assert.equal(await readFile(join(rootDir, "etc/systemd/system/kubelet.service.d/10-vmpod.conf"), "utf8").then((t) => t.includes("vmpod.sock")), true);
    systemd.calls.length = 0;
    await uninstall(host, { source, restartKubelet: true, purge: true });
    assert.deepEqual(systemd.calls, ["disable --now vmpod.service", "daemon-reload", "restart kubelet.service"]);
    assert.deepEqual(await snapshot(rootDir), before);
  });

  it("as the DaemonSet runs it: labels the node when kubelet switches to vmpod, and on SIGTERM keeps vmpod for that kubelet", async () => {
    kube.addNode("node-1", CONTAINERD);
    const terminated = new AbortController();
    const running = runUntilTerminated(deps(), { source, readyTimeoutMs: 10_000, labelIntervalMs: 50 }, terminated.signal);
    const deadline = Date.now() + 10_000;
    while (!daemon.running && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    kube.nodes.set("node-1", { labels: {}, containerRuntimeVersion: VMPOD });
    while (kube.nodes.get("node-1")?.labels["vmpod.io/runtime"] !== "true" && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(kube.nodes.get("node-1")?.labels["vmpod.io/runtime"], "true", "labelled while it stays");
    terminated.abort();
    assert.equal(await running, "kept");
    assert.ok(daemon.running, "kubelet's runtime keeps running");
    assert.ok(await stat(join(rootDir, "opt/vmpod/package.json")));
    assert.ok(log.lines().some((l) => l.msg === "terminating without uninstalling"));
  });

  it("as the DaemonSet runs it beside another runtime: on SIGTERM, even mid-install, it uninstalls", async () => {
    kube.addNode("node-1", CONTAINERD);
    const before = await snapshot(rootDir);
    const terminated = new AbortController();
    const running = runUntilTerminated(deps(), { source, readyTimeoutMs: 10_000, labelIntervalMs: 50 }, terminated.signal);
    const deadline = Date.now() + 10_000;
    while (kube.runtimeClasses.size < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    terminated.abort();
    assert.equal(await running, "uninstalled");
    assert.equal(daemon.running, false);
    assert.equal(kube.runtimeClasses.size, 0);
    await rm(join(rootDir, "run/vmpod"), { recursive: true, force: true });
    assert.deepEqual(await snapshot(rootDir), before);

    // SIGTERM while vmpod does not come up: the install stops waiting, and what it did is undone.
    daemon.ready = false;
    const early = new AbortController();
    const again = runUntilTerminated(deps(), { source, readyTimeoutMs: 60_000 }, early.signal);
    while (!daemon.running && Date.now() < deadline + 10_000) await new Promise((r) => setTimeout(r, 20));
    early.abort();
    assert.equal(await again, "uninstalled");
    await rm(join(rootDir, "run/vmpod"), { recursive: true, force: true });
    assert.deepEqual(await snapshot(rootDir), before);
  });
});
