/**
 * The CRI handlers against a fake Runtime and image service, through the
 * same bound handler tables the server registers: what reaches the
 * runtime, what comes back, and the checks made before the runtime is
 * called. Also the instrument wrapper: readiness gate and log lines.
 */
import assert from "node:assert/strict";
import { create, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { ContainerEventType, ContainerState, ImageService, PodSandboxState, RuntimeService, CgroupDriver, type PodSandboxConfig } from "../../../src/gen/cri/api_pb.js";
import { kindOf, messageOf, VmpodError } from "../../../src/common/errors.js";
import type { Fields, Logger } from "../../../src/common/log.js";
import { silentLogger } from "../../../src/common/log.js";
import type { CriDeps } from "../../../src/cri/deps.js";
import type { CallContext } from "../../../src/cri/grpc.js";
import { imageServiceHandlers } from "../../../src/cri/image-service.js";
import { instrument, isPolled } from "../../../src/cri/instrument.js";
import { runtimeServiceHandlers } from "../../../src/cri/runtime-service.js";
import { CpuRates } from "../../../src/cri/translate-stats.js";
import { BUSYBOX_ID, containerConfig, FakeImages, FakeRuntime, FakeStreaming, podConfig } from "./fakes.js";

function context(signal = new AbortController().signal): CallContext {
  return { method: "test", signal };
}

async function rejectsWith(promise: Promise<unknown>, kind: string, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.equal(kindOf(err), kind, messageOf(err));
    if (pattern) assert.match(messageOf(err), pattern);
    return true;
  });
}

/** Handlers that take init objects and get real messages, as from the wire. */
function creating<H extends object>(service: DescService, handlers: H): H {
  const out: Record<string, unknown> = {};
  for (const method of service.methods) {
    const handler = (handlers as Record<string, (r: unknown, c: CallContext) => unknown>)[method.localName];
    if (handler) out[method.localName] = (init: MessageInitShape<DescMessage>, c: CallContext) => handler(create(method.input, init ?? {}), c);
  }
  return out as H;
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

describe("cri handlers", () => {
  let runtime: FakeRuntime;
  let images: FakeImages;
  let streaming: FakeStreaming;
  let deps: CriDeps;
  let rt: ReturnType<typeof runtimeServiceHandlers>;
  let img: ReturnType<typeof imageServiceHandlers>;
  const req = <T>(value: T) => value as never;

  beforeEach(() => {
    runtime = new FakeRuntime();
    images = new FakeImages();
    streaming = new FakeStreaming();
    deps = { runtime, images, streaming, version: "1.2.3", logger: silentLogger, rates: new CpuRates() };
    rt = creating(RuntimeService, runtimeServiceHandlers(deps));
    img = creating(ImageService, imageServiceHandlers(deps));
  });

  async function runPod(config: PodSandboxConfig = podConfig(), runtimeHandler = ""): Promise<string> {
    const response = await rt.runPodSandbox(req({ config, runtimeHandler }), context());
    return response.podSandboxId ?? "";
  }

  async function runContainer(podId: string, start = true): Promise<string> {
    const { containerId } = await rt.createContainer(req({ podSandboxId: podId, config: containerConfig() }), context());
    if (start) await rt.startContainer(req({ containerId }), context());
    return containerId ?? "";
  }

  it("has a handler for every method of both services", () => {
    for (const m of RuntimeService.methods) assert.equal(typeof (rt as Record<string, unknown>)[m.localName], "function", m.name);
    for (const m of ImageService.methods) assert.equal(typeof (img as Record<string, unknown>)[m.localName], "function", m.name);
  });

  it("Version names vmpod and the CRI v1", async () => {
    assert.deepEqual(await rt.version(req({ version: "0.1.0" }), context()), { version: "0.1.0", runtimeName: "vmpod", runtimeVersion: "1.2.3", runtimeApiVersion: "v1" });
  });

  it("RunPodSandbox leaves an empty handler to the runtime (default, or the VM for untrusted pods) and refuses unknown ones before it", async () => {
    await runPod();
    assert.equal(runtime.calls.find((c) => c.method === "runPod")?.args[1], "");
    await runPod(podConfig(), "runc");
    assert.equal(runtime.calls.filter((c) => c.method === "runPod")[1]?.args[1], "runc");
    const before = runtime.calls.length;
    await rejectsWith(rt.runPodSandbox(req({ config: podConfig(), runtimeHandler: "kata" }), context()), "InvalidArgument", /runtime_handler.*kata/);
    await rejectsWith(rt.runPodSandbox(req({ config: podConfig({ metadata: { name: "", uid: "u", namespace: "n" } }) }), context()), "InvalidArgument", /config\.metadata\.name/);
    assert.equal(runtime.calls.length, before, "nothing reached the runtime");
  });

  it("PodSandboxStatus echoes the pod, with containers and verbose info; NOT_FOUND when unknown", async () => {
    const podId = await runPod();
    const containerId = await runContainer(podId);
    const response = await rt.podSandboxStatus(req({ podSandboxId: podId, verbose: true }), context());
    assert.equal(response.status?.id, podId);
    assert.equal(response.status?.state, PodSandboxState.SANDBOX_READY);
    assert.equal(response.status?.runtimeHandler, "vmpod");
    assert.deepEqual(response.status?.annotations, { "io.kubernetes.cri.untrusted-workload": "true" });
    assert.deepEqual(response.containersStatuses?.map((c) => c.id), [containerId]);
    assert.ok(typeof response.timestamp === "bigint" && response.timestamp > 0n);
    assert.equal((JSON.parse(response.info?.info ?? "{}") as { accel?: string }).accel, "tcg");
    const terse = await rt.podSandboxStatus(req({ podSandboxId: podId, verbose: false }), context());
    assert.equal(terse.info, undefined);
    await rejectsWith(rt.podSandboxStatus(req({ podSandboxId: "nope" }), context()), "NotFound");
    await rejectsWith(rt.podSandboxStatus(req({ podSandboxId: "" }), context()), "InvalidArgument", /pod_sandbox_id/);
  });

  it("ListPodSandbox and StreamPodSandboxes apply every filter", async () => {
    const a = await runPod(podConfig({ labels: { app: "a" } }));
    const b = await runPod(podConfig({ labels: { app: "b" } }));
    await rt.stopPodSandbox(req({ podSandboxId: b }), context());
    const ids = async (filter: unknown) => (await rt.listPodSandbox(req({ filter }), context())).items?.map((p) => p.id);
    assert.deepEqual(await ids(undefined), [a, b]);
    assert.deepEqual(await ids({ id: a, labelSelector: {} }), [a]);
    assert.deepEqual(await ids({ id: "", state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: {} }), [b]);
    assert.deepEqual(await ids({ id: "", labelSelector: { app: "a" } }), [a]);
    const pages = await collect(rt.streamPodSandboxes(req({}), context()));
    assert.deepEqual(pages.flatMap((p) => p.podSandboxes?.map((s) => s.id)), [a, b]);
  });

  it("Stop and Remove pass ids through and reach the runtime for unknown ids (which succeed there)", async () => {
    await rt.stopPodSandbox(req({ podSandboxId: "gone" }), context());
    await rt.removePodSandbox(req({ podSandboxId: "gone" }), context());
    await rt.stopContainer(req({ containerId: "gone", timeout: 10n }), context());
    await rt.removeContainer(req({ containerId: "gone" }), context());
    assert.deepEqual(
      runtime.calls.map((c) => [c.method, ...c.args]),
      [
        ["stopPod", "gone"],
        ["removePod", "gone"],
        ["stopContainer", "gone", 10],
        ["removeContainer", "gone"],
      ],
    );
    await rejectsWith(rt.stopContainer(req({ containerId: "c", timeout: -1n }), context()), "InvalidArgument", /timeout/);
  });

  it("CreateContainer checks its config before the runtime; ContainerStatus reports kubelet's fields", async () => {
    const podId = await runPod();
    await rejectsWith(rt.createContainer(req({ podSandboxId: podId, config: containerConfig({ logPath: "../escape.log" }) }), context()), "InvalidArgument", /config\.log_path/);
    await rejectsWith(rt.createContainer(req({ podSandboxId: "", config: containerConfig() }), context()), "InvalidArgument", /pod_sandbox_id/);
    assert.equal(runtime.calls.filter((c) => c.method === "createContainer").length, 0);
    const id = await runContainer(podId);
    await rt.stopContainer(req({ containerId: id, timeout: 0n }), context());
    const { status, info } = await rt.containerStatus(req({ containerId: id, verbose: true }), context());
    assert.equal(status?.state, ContainerState.CONTAINER_EXITED);
    assert.equal(status?.exitCode, 137);
    assert.equal(status?.reason, "Error");
    assert.equal(status?.logPath, "/var/log/pods/default_web_uid-1/app/0.log");
    assert.equal(status?.imageRef, "docker.io/library/busybox@sha256:" + "d".repeat(64));
    assert.equal(status?.imageId, "sha256:" + "c".repeat(64));
    assert.ok(info?.info);
    await rejectsWith(rt.containerStatus(req({ containerId: "nope" }), context()), "NotFound");
  });

  it("ListContainers and StreamContainers filter by id, pod, state and labels", async () => {
    const p1 = await runPod();
    const p2 = await runPod();
    const c1 = await runContainer(p1);
    const c2 = await runContainer(p2, false);
    const ids = async (filter: unknown) => (await rt.listContainers(req({ filter }), context())).containers?.map((c) => c.id);
    assert.deepEqual(await ids(undefined), [c1, c2]);
    assert.deepEqual(await ids({ id: "", podSandboxId: p2, labelSelector: {} }), [c2]);
    assert.deepEqual(await ids({ id: "", podSandboxId: "", state: { state: ContainerState.CONTAINER_RUNNING }, labelSelector: {} }), [c1]);
    assert.deepEqual(await ids({ id: c2, podSandboxId: "", labelSelector: { tier: "front" } }), [c2]);
    assert.deepEqual(await ids({ id: "", podSandboxId: "", labelSelector: { tier: "back" } }), []);
    const pages = await collect(rt.streamContainers(req({}), context()));
    assert.deepEqual(pages.flatMap((p) => p.containers?.map((c) => c.id)), [c1, c2]);
  });

  it("ExecSync returns output and exit code; Exec, Attach and PortForward check before handing out URLs", async () => {
    const podId = await runPod();
    const running = await runContainer(podId);
    const created = await runContainer(podId, false);
    const result = await rt.execSync(req({ containerId: running, cmd: ["echo", "hi"], timeout: 5n }), context());
    assert.deepEqual([Buffer.from(result.stdout as Uint8Array).toString(), result.exitCode], ["echo hi\n", 3]);
    await rejectsWith(rt.execSync(req({ containerId: running, cmd: [], timeout: 0n }), context()), "InvalidArgument", /cmd/);

    const exec = await rt.exec(req({ containerId: running, cmd: ["sh"], tty: true, stdin: true, stdout: true, stderr: false }), context());
    assert.equal(exec.url, "http://127.0.0.1:10010/exec/token1");
    assert.deepEqual(streaming.asked[0], { containerId: running, command: ["sh"], tty: true, stdin: true, stdout: true, stderr: false });
    await rejectsWith(rt.exec(req({ containerId: running, cmd: ["sh"], tty: true, stdout: true, stderr: true }), context()), "InvalidArgument", /stderr/);
    await rejectsWith(rt.exec(req({ containerId: running, cmd: ["sh"] }), context()), "InvalidArgument", /at least one/);
    await rejectsWith(rt.exec(req({ containerId: running, cmd: [], stdout: true }), context()), "InvalidArgument", /cmd/);
    await rejectsWith(rt.exec(req({ containerId: "nope", cmd: ["sh"], stdout: true }), context()), "NotFound");
    await rejectsWith(rt.attach(req({ containerId: created, stdout: true }), context()), "FailedPrecondition", /not running/);
    const attach = await rt.attach(req({ containerId: running, stdin: true, stdout: true, stderr: true }), context());
    assert.equal(attach.url, "http://127.0.0.1:10010/attach/token2");

    const pf = await rt.portForward(req({ podSandboxId: podId, port: [8080] }), context());
    assert.equal(pf.url, "http://127.0.0.1:10010/portforward/token3");
    assert.deepEqual(streaming.asked.at(-1), { podId, ports: [8080] });
    await rejectsWith(rt.portForward(req({ podSandboxId: podId, port: [0] }), context()), "InvalidArgument", /port\[0\]/);
    await rejectsWith(rt.portForward(req({ podSandboxId: "nope", port: [] }), context()), "NotFound");
  });

  it("stats carry the attributes kubelet matches and a CPU rate from the second sample on", async () => {
    const podId = await runPod();
    const id = await runContainer(podId);
    const first = await rt.containerStats(req({ containerId: id }), context());
    assert.equal(first.stats?.attributes?.metadata?.name, "app");
    assert.deepEqual(first.stats?.attributes?.labels, { tier: "front" });
    assert.equal(first.stats?.cpu?.usageNanoCores, undefined);
    assert.deepEqual(first.stats?.memory?.availableBytes, { value: 54_000_000n });
    runtime.cpuNs += 250_000_000n;
    runtime.sampleAt += 1_000_000_000n;
    const list = await rt.listContainerStats(req({ filter: { id: "", podSandboxId: podId, labelSelector: {} } }), context());
    assert.deepEqual(list.stats?.[0]?.cpu?.usageNanoCores, { value: 250_000_000n });
    assert.deepEqual(list.stats?.[0]?.writableLayer?.usedBytes, { value: 4096n });
    const pod = await rt.podSandboxStats(req({ podSandboxId: podId }), context());
    assert.equal(pod.stats?.attributes?.metadata?.uid, "uid-1");
    assert.deepEqual(pod.stats?.linux?.process?.processCount, { value: 5n });
    assert.equal(pod.stats?.linux?.containers?.[0]?.attributes?.id, id);
    const pods = await collect(rt.streamPodSandboxStats(req({}), context()));
    assert.deepEqual(pods.flatMap((p) => p.podSandboxStats?.map((s) => s.attributes?.id)), [podId]);
  });

  it("Status reports conditions and handlers, RuntimeConfig the cgroupfs driver", async () => {
    const response = await rt.status(req({ verbose: true }), context());
    assert.deepEqual(response.status?.conditions?.map((c) => [c.type, c.status, c.reason]), [
      ["RuntimeReady", true, ""],
      ["NetworkReady", false, "NetworkPluginNotReady"],
    ]);
    assert.deepEqual(response.runtimeHandlers?.map((h) => h.name), ["", "vmpod", "runc"]);
    assert.equal((JSON.parse(response.info?.info ?? "{}") as { defaultHandler: string }).defaultHandler, "vmpod");
    assert.deepEqual(await rt.runtimeConfig(req({}), context()), { linux: { cgroupDriver: CgroupDriver.CGROUPFS } });
  });

  it("CheckpointContainer is UNIMPLEMENTED; UpdateRuntimeConfig passes the pod CIDR", async () => {
    await rejectsWith(rt.checkpointContainer(req({ containerId: "c1" }), context()), "Unimplemented", /checkpoint/);
    await rt.updateRuntimeConfig(req({ runtimeConfig: { networkConfig: { podCidr: "10.244.0.0/24" } } }), context());
    assert.deepEqual(runtime.calls.at(-1), { method: "updateRuntimeConfig", args: ["10.244.0.0/24"] });
  });

  it("GetContainerEvents streams events with the pod's statuses and ends when the call is cancelled", async () => {
    const podId = await runPod();
    const id = await runContainer(podId, false);
    const controller = new AbortController();
    const iterator = rt.getContainerEvents(req({}), context(controller.signal))[Symbol.asyncIterator]();
    const next = iterator.next();
    await new Promise((r) => setImmediate(r));
    runtime.emit({ type: "started", containerId: id, podId, at: 123n });
    const first = await next;
    assert.equal(first.done, false);
    assert.equal(first.value?.containerEventType, ContainerEventType.CONTAINER_STARTED_EVENT);
    assert.equal(first.value?.createdAt, 123n);
    assert.equal(first.value?.podSandboxStatus?.id, podId);
    assert.deepEqual(first.value?.containersStatuses?.map((c) => c.id), [id]);
    const pending = iterator.next();
    controller.abort();
    assert.equal((await pending).done, true);
    assert.equal(runtime.listenerCount, 0);
  });

  it("UpdateContainerResources needs linux resources; UpdatePodSandboxResources needs a known pod", async () => {
    const podId = await runPod();
    const id = await runContainer(podId);
    await rejectsWith(rt.updateContainerResources(req({ containerId: id }), context()), "InvalidArgument", /linux/);
    await rt.updateContainerResources(req({ containerId: id, linux: { memoryLimitInBytes: 1n << 28n } }), context());
    assert.deepEqual(runtime.calls.at(-1)?.args, [id, { oomScoreAdj: 0, memoryLimitBytes: 1 << 28 }]);
    await rt.updatePodSandboxResources(req({ podSandboxId: podId, resources: { cpuShares: 2n } }), context());
    await rejectsWith(rt.updatePodSandboxResources(req({ podSandboxId: "nope" }), context()), "NotFound");
  });

  it("image RPCs: list, status (absent is empty), verbose info, pull with credentials, idempotent remove, fs info", async () => {
    assert.deepEqual((await img.listImages(req({}), context())).images?.map((i) => i.id), [BUSYBOX_ID]);
    assert.deepEqual((await img.listImages(req({ filter: { image: { image: "nothing:here" } } }), context())).images, []);
    assert.deepEqual(await img.imageStatus(req({ image: { image: "absent:1" } }), context()), {});
    const verbose = await img.imageStatus(req({ image: { image: "docker.io/library/busybox:latest" }, verbose: true }), context());
    assert.equal(verbose.image?.id, BUSYBOX_ID);
    assert.equal((JSON.parse(verbose.info?.info ?? "{}") as { imageSpec: { architecture: string } }).imageSpec.architecture, "amd64");
    await rejectsWith(img.imageStatus(req({}), context()), "InvalidArgument", /image/);

    const pulled = await img.pullImage(req({ image: { image: "busybox" }, auth: { username: "u", password: "p" }, sandboxConfig: podConfig() }), context());
    assert.equal(pulled.imageRef, BUSYBOX_ID);
    const pullArgs = images.calls.find((c) => c.method === "pull")?.args as [string, { credentials?: unknown }];
    assert.equal(pullArgs[0], "busybox");
    assert.deepEqual(pullArgs[1].credentials, { username: "u", password: "p" });
    await rejectsWith(img.pullImage(req({ image: { image: "missing:1" } }), context()), "NotFound");

    await img.removeImage(req({ image: { image: BUSYBOX_ID } }), context());
    await img.removeImage(req({ image: { image: BUSYBOX_ID } }), context());
    assert.equal(images.records.size, 0);

    const fs = await img.imageFsInfo(req({}), context());
    assert.equal(fs.imageFilesystems?.[0]?.fsId?.mountpoint, "/var/lib/vmpod/images");
    assert.equal(fs.containerFilesystems?.[0]?.fsId?.mountpoint, "/var/lib/vmpod/containers");
  });
});

class CapturingLogger implements Logger {
  readonly lines: { level: string; msg: string; fields: Fields }[] = [];
  debug(msg: string, fields: Fields = {}) {
    this.lines.push({ level: "debug", msg, fields });
  }
  info(msg: string, fields: Fields = {}) {
    this.lines.push({ level: "info", msg, fields });
  }
  warn(msg: string, fields: Fields = {}) {
    this.lines.push({ level: "warn", msg, fields });
  }
  error(msg: string, fields: Fields = {}) {
    this.lines.push({ level: "error", msg, fields });
  }
  child(): Logger {
    return this;
  }
}

describe("cri instrument", () => {
  let runtime: FakeRuntime;
  let logger: CapturingLogger;
  let ready: boolean;
  let rt: ReturnType<typeof runtimeServiceHandlers>;
  const req = <T>(value: T) => value as never;

  beforeEach(() => {
    runtime = new FakeRuntime();
    logger = new CapturingLogger();
    ready = false;
    const deps: CriDeps = { runtime, images: new FakeImages(), streaming: new FakeStreaming(), version: "1.2.3", logger: silentLogger, rates: new CpuRates() };
    rt = creating(RuntimeService, instrument(RuntimeService, runtimeServiceHandlers(deps), { logger, ready: () => ready }));
  });

  it("answers only Version, Status and RuntimeConfig before the runtime is ready", async () => {
    assert.equal((await rt.version(req({}), context())).runtimeName, "vmpod");
    await rt.status(req({}), context());
    await rt.runtimeConfig(req({}), context());
    await rejectsWith(rt.listPodSandbox(req({}), context()), "Unavailable", /not ready/);
    await rejectsWith(collect(rt.streamContainers(req({}), context())), "Unavailable");
    assert.equal(runtime.calls.filter((c) => c.method === "listPods" || c.method === "listContainers").length, 0);
    ready = true;
    await rt.listPodSandbox(req({}), context());
  });

  it("logs one line per call: method, code, duration, ids; polled calls at debug", async () => {
    ready = true;
    await rt.listContainers(req({}), context());
    await rt.stopPodSandbox(req({ podSandboxId: "p9" }), context());
    await rejectsWith(rt.podSandboxStatus(req({ podSandboxId: "p9" }), context()), "NotFound");
    runtime.failNext = { method: "removePod", error: new Error("disk on fire") };
    await assert.rejects(rt.removePodSandbox(req({ podSandboxId: "p9" }), context()));
    runtime.failNext = { method: "stopContainer", error: new VmpodError("FailedPrecondition", "busy") };
    await assert.rejects(rt.stopContainer(req({ containerId: "c9", timeout: 1n }), context()));
    const lines = logger.lines.map((l) => [l.level, l.fields.method, l.fields.code]);
    assert.deepEqual(lines, [
      ["debug", "ListContainers", "OK"],
      ["info", "StopPodSandbox", "OK"],
      ["debug", "PodSandboxStatus", "NOT_FOUND"],
      ["error", "RemovePodSandbox", "INTERNAL"],
      ["warn", "StopContainer", "FAILED_PRECONDITION"],
    ]);
    assert.equal(logger.lines[1]?.fields.pod, "p9");
    assert.equal(logger.lines[4]?.fields.container, "c9");
    assert.equal(logger.lines[3]?.fields.err, "disk on fire");
    assert.ok(logger.lines.every((l) => typeof l.fields.durationMs === "number"));
  });

  it("logs a stream once, when it ends or is cancelled", async () => {
    ready = true;
    const controller = new AbortController();
    const iterator = rt.getContainerEvents(req({}), context(controller.signal))[Symbol.asyncIterator]();
    const pending = iterator.next();
    await new Promise((r) => setImmediate(r));
    controller.abort();
    assert.equal((await pending).done, true);
    await collect(rt.streamPodSandboxes(req({}), context()));
    assert.deepEqual(logger.lines.map((l) => [l.fields.method, l.fields.code]), [
      ["GetContainerEvents", "CANCELLED"],
      ["StreamPodSandboxes", "OK"],
    ]);
  });

  it("knows which calls kubelet polls", () => {
    for (const m of ["Version", "ListContainers", "StreamImages", "PodSandboxStatus", "ContainerStatus", "ImageStatus", "ListPodSandboxStats", "ContainerStats", "ImageFsInfo"]) assert.ok(isPolled(m), m);
    for (const m of ["RunPodSandbox", "CreateContainer", "PullImage", "ExecSync", "StopContainer"]) assert.ok(!isPolled(m), m);
  });
});
