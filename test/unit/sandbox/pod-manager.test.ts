/**
 * The PodManager over fakes of its interfaces (a SandboxController whose
 * pods run nothing, an image service, a spec builder, logs): kubelet's
 * semantics — idempotence, names, handlers, states and exit reasons,
 * deadlines mid-boot, and what a restart finds.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, type Duplex, type Readable } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import type { OciProcess, OciSpec } from "../../../src/common/oci-spec.js";
import type { Digest } from "../../../src/image/digest.js";
import type { ImageRecord, ImageService, RootfsLayers, FilesystemUsage } from "../../../src/image/types.js";
import type { LogSink } from "../../../src/sandbox/container-io.js";
import type { ContainerUsage, PodCreateRequest, PodSandbox, SandboxController } from "../../../src/sandbox/controller.js";
import { PodManager, UNTRUSTED_ANNOTATION } from "../../../src/sandbox/pod-manager.js";
import type { ProcessIo } from "../../../src/sandbox/process-io.js";
import type { ContainerConfig, PodConfig } from "../../../src/sandbox/types.js";

const IMAGE: ImageRecord = {
  id: `sha256:${"a".repeat(64)}` as Digest,
  repoTags: ["docker.io/library/busybox:latest"],
  repoDigests: [`docker.io/library/busybox@sha256:${"b".repeat(64)}`],
  manifestDigest: `sha256:${"b".repeat(64)}` as Digest,
  layers: [],
  size: 1,
  platform: { os: "linux", architecture: "amd64" },
  config: { env: [], entrypoint: [], cmd: ["sh"], exposedPorts: [], volumes: [], labels: {} },
  pinned: false,
  pulledAt: "2026-01-01T00:00:00Z",
};

class FakeImages implements ImageService {
  readonly users = new Set<string>();
  async pull(): Promise<ImageRecord> {
    return IMAGE;
  }
  find(reference: string): ImageRecord | undefined {
    return reference === "busybox" || reference === IMAGE.id ? IMAGE : undefined;
  }
  list(): ImageRecord[] {
    return [IMAGE];
  }
  async remove(): Promise<void> {}
  async describe(): Promise<never> {
    throw new Error("unused");
  }
  async fsInfo(): Promise<never> {
    throw new Error("unused");
  }
  async use(imageId: Digest, holder: string): Promise<RootfsLayers> {
    this.users.add(holder);
    return { imageId, layers: [], upperDir: "/u", workDir: "/w" };
  }
  async writableLayerUsage(holder: string): Promise<FilesystemUsage | undefined> {
    return this.users.has(holder) ? { mountpoint: `/snapshots/${holder}/upper`, usedBytes: 4096, inodesUsed: 3, timestamp: 0 } : undefined;
  }
  async release(holder: string): Promise<void> {
    this.users.delete(holder);
  }
  holders(): string[] {
    return [...this.users];
  }
}

/** A pod whose containers "run" until signalled, exiting with 128+signal (0 for SIGTERM when told). */
class FakePod implements PodSandbox {
  readonly wantsBlockImages = false;
  ips: readonly string[] = [];
  readonly containers = new Map<string, { exit: (code: number) => void; exited: Promise<number>; ignoreTerm: boolean }>();
  readonly signals: string[] = [];
  stopped = false;
  private end!: () => void;
  readonly gone = new Promise<void>((r) => (this.end = r));
  ignoreTerm = false;
  oom = new Set<string>();

  constructor(readonly id: string, readonly handler: string) {}
  info() {
    return { fake: true };
  }
  async shareMount(containerId: string, index: number): Promise<string> {
    return `/shared/${containerId}/${index}`;
  }
  async createContainer(containerId: string): Promise<void> {
    let exit!: (code: number) => void;
    const exited = new Promise<number>((r) => (exit = r));
    this.containers.set(containerId, { exit, exited, ignoreTerm: this.ignoreTerm });
  }
  async startContainer(): Promise<void> {}
  io(containerId: string): ProcessIo {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    stdout.write(`${containerId} says hello\n`);
    void this.containers.get(containerId)?.exited.then(() => {
      stdout.end();
      stderr.end();
    });
    return { stdout, stderr, wait: async () => 0, resize: async () => {} };
  }
  async exec(_c: string, _e: string, process: OciProcess): Promise<ProcessIo> {
    const stdout = new PassThrough();
    stdout.end(process.args.join(" "));
    const stderr = new PassThrough();
    stderr.end();
    return { stdout, stderr, wait: async () => 3, resize: async () => {} };
  }
  async signal(containerId: string, _execId: string, signal: number): Promise<void> {
    this.signals.push(`${containerId}:${signal}`);
    const c = this.containers.get(containerId);
    if (!c) return;
    if (signal === 15 && !c.ignoreTerm) c.exit(0);
    if (signal === 9) c.exit(137);
  }
  async wait(containerId: string): Promise<number> {
    const c = this.containers.get(containerId);
    if (!c) throw new VmpodError("NotFound", "no such container");
    return c.exited;
  }
  async oomKilled(containerId: string): Promise<boolean> {
    return this.oom.has(containerId);
  }
  async update(): Promise<void> {}
  async usage(): Promise<ContainerUsage> {
    return { cpuUsageNs: 5n, memoryUsageBytes: 100n, memoryLimitBytes: 1000n, memoryStats: { inactive_file: 30n }, pids: 1n };
  }
  async removeContainer(containerId: string): Promise<void> {
    this.containers.delete(containerId);
  }
  async openPort(): Promise<Duplex> {
    return new PassThrough();
  }
  async stop(): Promise<void> {
    this.stopped = true;
    for (const c of this.containers.values()) c.exit(137);
    this.end();
  }
}

class FakeController implements SandboxController {
  readonly pods: FakePod[] = [];
  bootGate: Promise<void> | undefined;
  failBoot = false;
  recoverable = new Set<string>();
  constructor(readonly handler: string) {}
  async create(request: PodCreateRequest): Promise<PodSandbox> {
    if (this.bootGate) await this.bootGate;
    if (this.failBoot) throw new VmpodError("Unavailable", "the VM exited during boot");
    const pod = new FakePod(request.id, this.handler);
    this.pods.push(pod);
    return pod;
  }
  async recover(id: string): Promise<PodSandbox | undefined> {
    return this.recoverable.has(id) ? new FakePod(id, this.handler) : undefined;
  }
}

class MemoryLog implements LogSink {
  text = "";
  async consume(_stream: "stdout" | "stderr", source: Readable): Promise<void> {
    for await (const c of source) this.text += String(c);
  }
  async reopen(): Promise<void> {}
  async close(): Promise<void> {}
}

function podConfig(name = "web", extra: Partial<PodConfig> = {}): PodConfig {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: "default", attempt: 0 },
    hostname: name,
    logDirectory: "/var/log/pods/x",
    portMappings: [],
    labels: { app: name },
    annotations: {},
    cgroupParent: "",
    namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" },
    sysctls: {},
    privileged: false,
    supplementalGroups: [],
    readonlyRootfs: false,
    ...extra,
  };
}

function containerConfig(name = "c", extra: Partial<ContainerConfig> = {}): ContainerConfig {
  return {
    metadata: { name, attempt: 0 },
    image: "busybox",
    command: ["sleep", "1000"],
    args: [],
    workingDir: "",
    envs: [],
    mounts: [],
    devices: [],
    labels: {},
    annotations: {},
    logPath: `${name}/0.log`,
    stdin: false,
    stdinOnce: false,
    tty: false,
    security: { privileged: false, namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" }, readonlyRootfs: false, supplementalGroups: [], noNewPrivs: false },
    ...extra,
  };
}

describe("pod manager (fake pods)", () => {
  let stateRoot: string;
  let vm: FakeController;
  let runc: FakeController;
  let images: FakeImages;
  let logs: Map<string, MemoryLog>;

  let networkStatus: (() => Promise<{ ready: boolean; reason?: string; message?: string }>) | undefined;
  const open = () =>
    PodManager.open({
      ...(networkStatus ? { networkStatus } : {}),
      stateRoot,
      controllers: new Map([
        ["vmpod", vm],
        ["runc", runc],
      ]),
      defaultHandler: "vmpod",
      vmHandler: "vmpod",
      images,
      buildSpec: async (r): Promise<OciSpec> => ({ ociVersion: "1.1.0", process: { args: [...r.container.command], cwd: "/", user: { uid: 0, gid: 0 } } }),
      openLog: async (path) => {
        const log = new MemoryLog();
        logs.set(path, log);
        return log;
      },
      logger: silentLogger,
    });

  beforeEach(async () => {
    stateRoot = await mkdtemp(join(tmpdir(), "vmpod-pm-"));
    vm = new FakeController("vmpod");
    runc = new FakeController("runc");
    images = new FakeImages();
    logs = new Map();
    networkStatus = undefined;
  });

  it("reports NetworkReady as the network says, and a pod's IPs from its sandbox", async () => {
    let m = await open();
    assert.deepEqual((await m.conditions()).map((c) => [c.type, c.status, c.reason]), [
      ["RuntimeReady", true, ""],
      ["NetworkReady", false, "NoNetworkPlugin"],
    ]);
    networkStatus = async () => ({ ready: false, reason: "NetworkPluginNotReady", message: "no network configuration in /etc/cni/net.d" });
    m = await open();
    const notReady = (await m.conditions()).find((c) => c.type === "NetworkReady");
    assert.deepEqual([notReady?.status, notReady?.reason, notReady?.message], [false, "NetworkPluginNotReady", "no network configuration in /etc/cni/net.d"]);
    networkStatus = async () => ({ ready: true });
    m = await open();
    assert.equal((await m.conditions()).find((c) => c.type === "NetworkReady")?.status, true);
    const id = await m.runPod(podConfig(), "");
    const pod = vm.pods.find((p) => p.id === id);
    assert.ok(pod);
    pod.ips = ["10.88.0.7", "fd00::7"];
    assert.deepEqual([m.podStatus(id).ip, m.podStatus(id).additionalIps], ["10.88.0.7", ["fd00::7"]]);
  });
  afterEach(async () => {
    await rm(stateRoot, { recursive: true, force: true });
  });

  it("runs a pod, and the same pod asked again is the same pod", async () => {
    const m = await open();
    const id = await m.runPod(podConfig(), "");
    assert.equal(await m.runPod(podConfig(), ""), id);
    assert.equal(vm.pods.length, 1);
    const status = m.podStatus(id);
    assert.equal(status.state, "ready");
    assert.equal(status.handler, "vmpod");
    assert.deepEqual(m.listPods({ labels: { app: "web" } }).map((p) => p.id), [id]);
    assert.deepEqual(m.listPods({ labels: { app: "db" } }), []);
  });

  it("refuses the same pod name with another uid while the first is up, and allows it once stopped", async () => {
    const m = await open();
    const id = await m.runPod(podConfig(), "");
    const other = { ...podConfig(), metadata: { ...podConfig().metadata, uid: "another" } };
    await assert.rejects(m.runPod(other, ""), (e: unknown) => e instanceof VmpodError && e.kind === "FailedPrecondition" && e.message.includes(id));
    await m.stopPod(id);
    assert.notEqual(await m.runPod(other, ""), id);
  });

  it("routes handlers and untrusted pods, and refuses unknown handlers and untrusted non-VM pods", async () => {
    const m = await open();
    const r = await m.runPod(podConfig("plain"), "runc");
    assert.equal(m.podStatus(r).handler, "runc");
    const u = await m.runPod(podConfig("untrusted", { annotations: { [UNTRUSTED_ANNOTATION]: "true" } }), "");
    assert.equal(m.podStatus(u).handler, "vmpod");
    await assert.rejects(m.runPod(podConfig("bad", { annotations: { [UNTRUSTED_ANNOTATION]: "true" } }), "runc"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
    await assert.rejects(m.runPod(podConfig("x"), "kata"), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument" && /kata/.test(e.message));
  });

  it("keeps a pod whose boot outlasts the request, and hands it to the retry", async () => {
    let release = () => {};
    vm.bootGate = new Promise((r) => (release = r));
    const m = await open();
    const deadline = AbortSignal.timeout(30);
    await assert.rejects(m.runPod(podConfig(), "", { signal: deadline }), (e: unknown) => e instanceof VmpodError && e.kind === "DeadlineExceeded");
    const retry = m.runPod(podConfig(), "");
    release();
    const id = await retry;
    assert.equal(vm.pods.length, 1, "booted once");
    assert.equal(m.podStatus(id).state, "ready");
  });

  it("forgets a pod whose boot failed, leaving no record", async () => {
    vm.failBoot = true;
    const m = await open();
    await assert.rejects(m.runPod(podConfig(), ""), (e: unknown) => e instanceof VmpodError && e.kind === "Unavailable");
    assert.deepEqual(m.listPods(), []);
    const again = await open();
    assert.deepEqual(again.listPods(), []);
  });

  it("creates, starts and stops a container: states, timestamps, exit code and reason", async () => {
    const m = await open();
    const pod = await m.runPod(podConfig(), "");
    await assert.rejects(m.createContainer(pod, containerConfig("c", { image: "nginx" })), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound");
    const id = await m.createContainer(pod, containerConfig());
    await assert.rejects(m.createContainer(pod, containerConfig()), (e: unknown) => e instanceof VmpodError && e.kind === "AlreadyExists");
    assert.equal(m.containerStatus(id).state, "created");
    assert.equal(m.containerStatus(id).logPath, "/var/log/pods/x/c/0.log");
    await m.startContainer(id);
    const running = m.containerStatus(id);
    assert.equal(running.state, "running");
    assert.ok(running.startedAt > 0n);
    await m.stopContainer(id, 5);
    const stopped = m.containerStatus(id);
    assert.equal(stopped.state, "exited");
    assert.equal(stopped.exitCode, 0);
    assert.equal(stopped.reason, "Completed");
    assert.ok(stopped.finishedAt >= stopped.startedAt);
    await m.stopContainer(id, 5); // idempotent
    await m.removeContainer(id);
    await m.removeContainer(id); // idempotent
    assert.equal(logs.get("/var/log/pods/x/c/0.log")?.text, `${id} says hello\n`);
    assert.throws(() => m.containerStatus(id), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound");
    assert.equal(images.users.size, 0);
  });

  it("kills a container that ignores its stop signal after the timeout, reporting Error", async () => {
    const m = await open();
    const pod = await m.runPod(podConfig(), "");
    const fake = vm.pods[0];
    assert.ok(fake);
    fake.ignoreTerm = true;
    const id = await m.createContainer(pod, containerConfig());
    await m.startContainer(id);
    await m.stopContainer(id, 1);
    assert.deepEqual(fake.signals, [`${id}:15`, `${id}:9`]);
    assert.equal(m.containerStatus(id).exitCode, 137);
    assert.equal(m.containerStatus(id).reason, "Error");
  });

  it("reports OOMKilled for a container the OOM killer ended", async () => {
    const m = await open();
    const pod = await m.runPod(podConfig(), "");
    const id = await m.createContainer(pod, containerConfig());
    await m.startContainer(id);
    vm.pods[0]?.oom.add(id);
    await m.stopContainer(id, 0);
    assert.equal(m.containerStatus(id).reason, "OOMKilled");
  });

  it("runs exec sync with its output and exit code", async () => {
    const m = await open();
    const pod = await m.runPod(podConfig(), "");
    const id = await m.createContainer(pod, containerConfig());
    await m.startContainer(id);
    const r = await m.execSync(id, ["echo", "hi"], 5);
    assert.equal(r.stdout.toString(), "echo hi");
    assert.equal(r.exitCode, 3);
    const stats = await m.containerStats(id);
    assert.equal(stats.memoryWorkingSetBytes, 70n);
    assert.equal(stats.writableLayerBytes, 4096n, "the writable layer's bytes on the host");
    assert.equal(stats.writableLayerInodes, 3n);
  });

  it("emits lifecycle events to subscribers", async () => {
    const m = await open();
    const ac = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      for await (const e of m.events({ signal: ac.signal })) {
        seen.push(e.type);
        if (e.type === "deleted") ac.abort();
      }
    })();
    const pod = await m.runPod(podConfig(), "");
    const id = await m.createContainer(pod, containerConfig());
    await m.startContainer(id);
    await m.removeContainer(id);
    await reading;
    assert.deepEqual(seen, ["created", "started", "stopped", "deleted"]);
  });

  it("stops and removes a pod with its containers; unknown ids succeed", async () => {
    const m = await open();
    const pod = await m.runPod(podConfig(), "");
    const id = await m.createContainer(pod, containerConfig());
    await m.startContainer(id);
    await m.stopPod(pod);
    assert.equal(m.podStatus(pod).state, "notready");
    assert.equal(m.containerStatus(id).state, "exited");
    assert.equal(vm.pods[0]?.stopped, true);
    await m.removePod(pod);
    assert.deepEqual(m.listPods(), []);
    assert.deepEqual(m.listContainers(), []);
    await m.stopPod("nope");
    await m.removePod("nope");
    assert.throws(() => m.podStatus("nope"), (e: unknown) => e instanceof VmpodError && e.kind === "NotFound");
  });

  it("after a restart, lists what it had: lost pods NOTREADY with their containers exited", async () => {
    const first = await open();
    const lost = await first.runPod(podConfig("lost"), "");
    const kept = await first.runPod(podConfig("kept"), "");
    const c = await first.createContainer(lost, containerConfig());
    await first.startContainer(c);
    vm.recoverable.add(kept);
    const second = await open();
    assert.equal(second.podStatus(lost).state, "notready");
    assert.equal(second.podStatus(kept).state, "ready");
    const status = second.containerStatus(c);
    assert.equal(status.state, "exited");
    assert.match(status.message, /restart/);
    await second.removePod(lost);
    assert.equal(images.users.size, 0);
  });
});
