/**
 * The CRI server on a real unix socket, called through the real grpc-js
 * client built from the same descriptors, with fakes behind it at the
 * Runtime and image service interfaces: status codes on the wire, server
 * streams, the readiness gate, the socket's mode, a stale socket replaced,
 * a live one refused, and a close that removes its socket and nothing else.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { spawn } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status as Code } from "@grpc/grpc-js";
import { ContainerEventType, ContainerState } from "../../../src/gen/cri/api_pb.js";
import { kindOf } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { createCriClient, type CriClient } from "../../../src/cri/client.js";
import { createCriServer, type CriServer } from "../../../src/cri/server.js";
import { BUSYBOX_ID, containerConfig, FakeImages, FakeRuntime, FakeStreaming, podConfig } from "../../unit/cri/fakes.js";

async function rejectsWithCode(promise: Promise<unknown>, code: Code, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    const e = err as { code?: number; details?: string };
    assert.equal(e.code, code, `expected ${Code[code]}, got ${String(e.code)}: ${e.details ?? String(err)}`);
    if (pattern) assert.match(e.details ?? "", pattern);
    return true;
  });
}

/** What a crashed daemon leaves: a socket file nobody listens on (its process killed with SIGKILL). */
async function leaveStaleSocket(path: string): Promise<void> {
  const child = spawn(process.execPath, ["-e", `require("node:net").createServer().listen(${JSON.stringify(path)}, () => process.stdout.write("up"))`], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once("data", () => resolve());
      child.once("exit", (code) => reject(new Error(`listener exited with ${String(code)}`)));
    });
  } finally {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
}

describe("cri server on a unix socket", function () {
  this.timeout(30_000);
  let dir: string;
  let socketPath: string;
  let runtime: FakeRuntime;
  let images: FakeImages;
  let ready: boolean;
  let server: CriServer | undefined;
  let client: CriClient | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-cri-"));
    socketPath = join(dir, "run", "vmpod.sock");
    runtime = new FakeRuntime();
    images = new FakeImages();
    ready = true;
  });

  async function stopServer(): Promise<void> {
    client?.close();
    client = undefined;
    await server?.close();
    server = undefined;
  }

  afterEach(async () => {
    await stopServer();
    await rm(dir, { recursive: true, force: true });
  });

  async function start(): Promise<CriClient> {
    server = createCriServer({ socketPath, runtime, images, streaming: new FakeStreaming(), version: "9.9.9", logger: silentLogger, ready: () => ready, closeGraceMs: 500 });
    await server.start();
    client = createCriClient(socketPath);
    await client.waitForReady(5000);
    return client;
  }

  it("listens on a 0660 socket and answers Version", async () => {
    const c = await start();
    const info = await stat(socketPath);
    assert.ok(info.isSocket());
    assert.equal(info.mode & 0o777, 0o660);
    const version = await c.runtime.version({ version: "v1" });
    assert.equal(version.runtimeName, "vmpod");
    assert.equal(version.runtimeVersion, "9.9.9");
    assert.equal(version.runtimeApiVersion, "v1");
  });

  it("walks a pod and a container through their life with the codes kubelet expects", async () => {
    const c = await start();
    const { podSandboxId } = await c.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: "runc" });
    const pod = await c.runtime.podSandboxStatus({ podSandboxId, verbose: true });
    assert.equal(pod.status?.runtimeHandler, "runc");
    assert.equal(pod.status?.metadata?.name, "web");
    assert.ok(pod.info.info);
    const { containerId } = await c.runtime.createContainer({ podSandboxId, config: containerConfig(), sandboxConfig: podConfig() });
    await c.runtime.startContainer({ containerId });
    const listed = await c.runtime.listContainers({ filter: { podSandboxId, state: { state: ContainerState.CONTAINER_RUNNING } } });
    assert.deepEqual(listed.containers.map((x) => x.id), [containerId]);
    const exec = await c.runtime.execSync({ containerId, cmd: ["true"], timeout: 2n });
    assert.equal(exec.exitCode, 3);
    assert.equal(Buffer.from(exec.stdout).toString(), "true\n");
    await c.runtime.stopContainer({ containerId, timeout: 1n });
    const status = await c.runtime.containerStatus({ containerId });
    assert.equal(status.status?.state, ContainerState.CONTAINER_EXITED);
    assert.equal(status.status?.exitCode, 137);
    await c.runtime.removeContainer({ containerId });
    await c.runtime.stopPodSandbox({ podSandboxId });
    await c.runtime.removePodSandbox({ podSandboxId });
    await c.runtime.removePodSandbox({ podSandboxId });
  });

  it("answers NOT_FOUND, INVALID_ARGUMENT, UNIMPLEMENTED and INTERNAL as such", async () => {
    const c = await start();
    await rejectsWithCode(c.runtime.podSandboxStatus({ podSandboxId: "unknown-pod" }), Code.NOT_FOUND, /unknown-pod/);
    await rejectsWithCode(c.runtime.containerStatus({ containerId: "unknown-ctr" }), Code.NOT_FOUND);
    await rejectsWithCode(c.runtime.runPodSandbox({ config: podConfig({ metadata: undefined }) }), Code.INVALID_ARGUMENT, /config\.metadata/);
    await rejectsWithCode(c.runtime.runPodSandbox({ config: podConfig({ metadata: { name: "", uid: "u", namespace: "n" } }) }), Code.INVALID_ARGUMENT, /config\.metadata\.name/);
    await rejectsWithCode(c.runtime.runPodSandbox({ config: podConfig(), runtimeHandler: "nope" }), Code.INVALID_ARGUMENT, /runtime_handler/);
    const { podSandboxId } = await c.runtime.runPodSandbox({ config: podConfig() });
    await rejectsWithCode(c.runtime.createContainer({ podSandboxId, config: containerConfig({ logPath: "/etc/passwd" }) }), Code.INVALID_ARGUMENT, /config\.log_path/);
    await rejectsWithCode(c.runtime.checkpointContainer({ containerId: "x" }), Code.UNIMPLEMENTED, /checkpoint/);
    runtime.failNext = { method: "stopPod", error: new TypeError("cannot read properties of undefined") };
    await rejectsWithCode(c.runtime.stopPodSandbox({ podSandboxId }), Code.INTERNAL, /cannot read/);
  });

  it("is UNAVAILABLE before the runtime is ready, except Version, Status and RuntimeConfig", async () => {
    ready = false;
    const c = await start();
    await c.runtime.version({});
    const st = await c.runtime.status({});
    assert.equal(st.status?.conditions.length, 2);
    await rejectsWithCode(c.runtime.listPodSandbox({}), Code.UNAVAILABLE, /not ready/);
    await rejectsWithCode(c.images.listImages({}), Code.UNAVAILABLE);
    ready = true;
    assert.deepEqual((await c.images.listImages({})).images.map((i) => i.id), [BUSYBOX_ID]);
  });

  it("serves the image service: status of an absent image is empty, pull returns the id", async () => {
    const c = await start();
    const absent = await c.images.imageStatus({ image: { image: "not-here:1" } });
    assert.equal(absent.image, undefined);
    const pulled = await c.images.pullImage({ image: { image: "busybox" }, auth: { username: "u", password: "p" } });
    assert.equal(pulled.imageRef, BUSYBOX_ID);
    await rejectsWithCode(c.images.pullImage({ image: { image: "missing:1" } }), Code.NOT_FOUND);
    await c.images.removeImage({ image: { image: BUSYBOX_ID } });
    await c.images.removeImage({ image: { image: BUSYBOX_ID } });
    const fs = await c.images.imageFsInfo({});
    assert.equal(fs.imageFilesystems.length, 1);
  });

  it("streams lists in pages and container events until the client cancels", async () => {
    const c = await start();
    const ids: string[] = [];
    for (let i = 0; i < 250; i++) ids.push((await c.runtime.runPodSandbox({ config: podConfig({ metadata: { name: `p${i}`, uid: `u${i}`, namespace: "n" } }) })).podSandboxId);
    const pages: number[] = [];
    const seen: string[] = [];
    for await (const page of c.runtime.streamPodSandboxes({})) {
      pages.push(page.podSandboxes.length);
      seen.push(...page.podSandboxes.map((p) => p.id));
    }
    assert.deepEqual(pages, [100, 100, 50]);
    assert.deepEqual(seen, ids);

    const controller = new AbortController();
    const events: ContainerEventType[] = [];
    const consumer = (async () => {
      try {
        for await (const event of c.runtime.getContainerEvents({}, { signal: controller.signal })) {
          events.push(event.containerEventType);
          if (events.length === 2) controller.abort();
        }
      } catch (err) {
        if ((err as { code?: number }).code !== Code.CANCELLED) throw err;
      }
    })();
    for (let i = 0; i < 100 && runtime.listenerCount === 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(runtime.listenerCount, 1, "the server subscribed to the runtime's events");
    const podId = ids[0] ?? "";
    runtime.emit({ type: "created", containerId: "c1", podId, at: 1n });
    runtime.emit({ type: "started", containerId: "c1", podId, at: 2n });
    await consumer;
    assert.deepEqual(events, [ContainerEventType.CONTAINER_CREATED_EVENT, ContainerEventType.CONTAINER_STARTED_EVENT]);
    for (let i = 0; i < 100 && runtime.listenerCount > 0; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(runtime.listenerCount, 0, "the server's subscription ended with the call");
  });

  it("replaces a stale socket, refuses a live one or a plain file, and removes only its own socket on close", async () => {
    // A stale socket: bound once, its server gone without unlinking.
    await start();
    await stopServer();
    assert.deepEqual(await readdir(join(dir, "run")), [], "close removed the socket");

    await leaveStaleSocket(socketPath);
    assert.ok((await stat(socketPath)).isSocket());
    await writeFile(join(dir, "run", "neighbour.txt"), "keep me");
    const c = await start();
    await c.runtime.version({});

    // A second server on the same path refuses while the first is live.
    const second = createCriServer({ socketPath, runtime, images, streaming: new FakeStreaming(), version: "0", logger: silentLogger });
    await assert.rejects(second.start(), (err: unknown) => kindOf(err) === "AlreadyExists");
    await second.close();
    assert.ok((await stat(socketPath)).isSocket(), "the refused server left the live socket alone");

    await stopServer();
    assert.deepEqual(await readdir(join(dir, "run")), ["neighbour.txt"]);

    await writeFile(socketPath, "not a socket");
    const third = createCriServer({ socketPath, runtime, images, streaming: new FakeStreaming(), version: "0", logger: silentLogger });
    await assert.rejects(third.start(), (err: unknown) => kindOf(err) === "FailedPrecondition");
    await third.close();
    assert.equal((await stat(socketPath)).isFile(), true, "a plain file is never removed");
  });
});
