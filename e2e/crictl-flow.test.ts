/**
 * The flows crictl and kubelet drive, over the real CRI socket of a running
 * `vmpod serve`: version and status, pull, a pod in a VM with two
 * containers, logs, exec (sync, and streamed with a terminal), port-forward
 * into the VM, stop and removal; a runc pod beside it; handler routing; bad
 * requests with their codes; the daemon's kill -9 and restart; nothing
 * left at the end.
 */
import assert from "node:assert/strict";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { status as grpcStatus } from "@grpc/grpc-js";
import { processesMentioning } from "../src/common/processes.js";
import { assertNothingLeft } from "../test/helpers/leaks.js";
import { pushBusybox, type PushedImage } from "../test/helpers/registry/images.js";
import { startRegistry, type RunningRegistry } from "../test/helpers/registry/server.js";
import { connectSpdy, forwardOnce, runSpdyCommand } from "../test/helpers/streaming/spdy-client.js";
import { runWsCommand } from "../test/helpers/streaming/ws-client.js";
import { until } from "./helpers.js";
import { startDaemon, type Daemon } from "./daemon.js";

function podConfig(name: string, logDir: string, annotations: Record<string, string> = {}) {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: "e2e", attempt: 0 },
    hostname: name,
    logDirectory: join(logDir, name),
    labels: { test: "e2e" },
    annotations,
    // As kubelet sends it for a pod without shareProcessNamespace: each container its own pid namespace.
    linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } },
  };
}

function containerConfig(name: string, image: string, command: string[], extra: Record<string, unknown> = {}) {
  return { metadata: { name, attempt: 0 }, image: { image }, command, logPath: `${name}.log`, linux: { securityContext: { namespaceOptions: { pid: 1 /* CONTAINER */ } } }, ...extra };
}

function code(c: number) {
  return (e: unknown) => (e as { code?: number }).code === c;
}

describe("CRI end to end (a real daemon, real VMs)", function () {
  this.timeout(900_000);
  let registry: RunningRegistry;
  let image: PushedImage;
  let daemon: Daemon;

  before(async () => {
    registry = await startRegistry();
    image = await pushBusybox(registry, { repository: "e2e/busybox", tag: "1" });
    daemon = await startDaemon();
    // Every test may run alone (mocha -g): the image is there for each.
    await daemon.client.images.pullImage({ image: { image: image.reference } });
  });
  after(async () => {
    const root = daemon?.root;
    await daemon?.dispose();
    await registry?.stop();
    if (root) await assertNothingLeft(root);
  });
  afterEach(function () {
    if (this.currentTest?.state === "failed") process.stderr.write(`daemon output:\n${daemon.output().slice(-6000)}\n`);
  });

  it("answers version and status", async () => {
    const v = await daemon.client.runtime.version({ version: "v1" });
    assert.equal(v.runtimeName, "vmpod");
    assert.equal(v.runtimeApiVersion, "v1");
    const s = await daemon.client.runtime.status({ verbose: false });
    const ready = s.status?.conditions.find((c) => c.type === "RuntimeReady");
    assert.equal(ready?.status, true);
  });

  it("pulls an image and lists it", async () => {
    const pulled = await daemon.client.images.pullImage({ image: { image: image.reference } });
    assert.equal(pulled.imageRef, image.configDigest);
    const list = await daemon.client.images.listImages({});
    assert.ok(list.images.some((i) => i.id === image.configDigest && i.repoTags.includes(`${image.host}/e2e/busybox:1`)));
    const st = await daemon.client.images.imageStatus({ image: { image: image.reference }, verbose: true });
    assert.equal(st.image?.id, image.configDigest);
    const fs = await daemon.client.images.imageFsInfo({});
    assert.ok((fs.imageFilesystems[0]?.usedBytes?.value ?? 0n) > 0n);
  });

  it("runs a pod in a VM with two containers: logs, exec, terminal, port-forward, mounts, events, stop and removal", async () => {
    const rt = daemon.client.runtime;
    const base = podConfig("vm-pod", daemon.logDir);
    const config = { ...base, linux: { ...base.linux, sysctls: { "kernel.shm_rmid_forced": "1" } }, dnsConfig: { servers: ["10.96.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] } };
    const hostDir = join(daemon.root, "host-data");
    await mkdir(hostDir);
    await writeFile(join(hostDir, "greeting"), "from the host\n");
    const events: string[] = [];
    const watching = new AbortController();
    const eventsDone = (async () => {
      try {
        for await (const e of rt.getContainerEvents({}, { signal: watching.signal })) events.push(`${e.containerEventType}:${e.containerId}`);
      } catch {
        // cancelled at the end
      }
    })();
    const { podSandboxId: pod } = await rt.runPodSandbox({ config });
    assert.equal((await rt.runPodSandbox({ config })).podSandboxId, pod, "the same pod asked again");
    const ps = await rt.podSandboxStatus({ podSandboxId: pod, verbose: true });
    assert.equal(ps.status?.state, 0 /* SANDBOX_READY */);
    assert.equal(ps.status?.metadata?.name, "vm-pod");

    await assert.rejects(
      rt.createContainer({ podSandboxId: pod, config: containerConfig("nomount", image.reference, ["true"], { mounts: [{ containerPath: "/x", hostPath: join(hostDir, "missing") }] }), sandboxConfig: config }),
      code(grpcStatus.INVALID_ARGUMENT),
    );
    const { containerId: c1 } = await rt.createContainer({
      podSandboxId: pod,
      config: containerConfig("talker", image.reference, ["sh", "-c", "echo hello from the vm; echo oops >&2; while true; do echo tick; sleep 1; done"], {
        mounts: [{ containerPath: "/data", hostPath: hostDir, readonly: true }],
      }),
      sandboxConfig: config,
    });
    const { containerId: web } = await rt.createContainer({
      podSandboxId: pod,
      config: containerConfig("web", image.reference, ["/bin/busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"]),
      sandboxConfig: config,
    });
    await rt.startContainer({ containerId: c1 });
    await rt.startContainer({ containerId: web });
    const cs = await rt.containerStatus({ containerId: c1 });
    assert.equal(cs.status?.state, 1 /* CONTAINER_RUNNING */);
    const logPath = cs.status?.logPath ?? "";
    const log = await until("the container's log", async () => {
      const text = await readFile(logPath, "utf8").catch(() => "");
      return text.includes("stderr") && text.includes("stdout") ? text : undefined;
    });
    assert.match(log, /^\S+ stdout F hello from the vm$/m);
    assert.match(log, /^\S+ stderr F oops$/m);

    const files = await rt.execSync({ containerId: c1, cmd: ["sh", "-c", "cat /etc/hostname /etc/resolv.conf /data/greeting; echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced); touch /data/nope 2>/dev/null && echo writable"], timeout: 30n });
    const seen = Buffer.from(files.stdout).toString();
    assert.match(seen, /^shm_rmid_forced=1$/m, "the pod's sysctls are set in the guest");
    assert.match(seen, /^vm-pod$/m);
    assert.match(seen, /^nameserver 10\.96\.0\.10$/m);
    assert.match(seen, /^search svc\.cluster\.local$/m);
    assert.match(seen, /^from the host$/m);
    assert.doesNotMatch(seen, /writable/, "a read-only mount is read-only");

    // kubelet's rotation: rename the file, then ReopenContainerLog; the output goes on in a new file.
    await rename(logPath, `${logPath}.1`);
    await rt.reopenContainerLog({ containerId: c1 });
    await until("output in the reopened log", async () => ((await readFile(logPath, "utf8").catch(() => "")).includes("stdout F tick") ? true : undefined));

    const sync = await rt.execSync({ containerId: c1, cmd: ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout: 30n });
    assert.equal(Buffer.from(sync.stdout).toString(), "out\n");
    assert.equal(Buffer.from(sync.stderr).toString(), "err\n");
    assert.equal(sync.exitCode, 3);

    const { url: ttyUrl } = await rt.exec({ containerId: c1, cmd: ["sh", "-c", "sleep 0.5; stty size; echo tty-ok"], tty: true, stdout: true });
    const tty = await runSpdyCommand(ttyUrl, { tty: true, stdout: true, resizes: [{ Width: 101, Height: 33 }] });
    assert.match(tty.stdout, /^33 101\r?\n/, "the command sees the client's terminal size, with no resize of its own");
    assert.match(tty.stdout, /tty-ok/);
    assert.match(tty.error, /Success/);

    const { url: wsUrl } = await rt.exec({ containerId: c1, cmd: ["sh", "-c", "cat; exit 4"], stdin: true, stdout: true, stderr: true });
    const ws = await runWsCommand(wsUrl, { stdin: "through websocket\n" });
    assert.equal(ws.channels.get(1), "through websocket\n");
    assert.match(ws.channels.get(3) ?? "", /NonZeroExitCode|exit code/);

    const { url: pfUrl } = await rt.portForward({ podSandboxId: pod, port: [8080] });
    const conn = await connectSpdy(pfUrl, ["portforward.k8s.io"]);
    try {
      const answer = await forwardOnce(conn.session, "1", 8080, "GET /passwd HTTP/1.0\r\n\r\n");
      assert.match(answer.data, /^HTTP\/1\.[01] 200/);
      assert.match(answer.data, /root:x:0:0/);
    } finally {
      conn.session.destroy();
    }

    // Security context and resources: a non-root user, a read-only root, a memory limit changed while it runs.
    const { containerId: sec } = await rt.createContainer({
      podSandboxId: pod,
      config: containerConfig("locked", image.reference, ["sleep", "100000"], {
        linux: {
          resources: { memoryLimitInBytes: 64n << 20n },
          securityContext: { namespaceOptions: { pid: 1 }, runAsUser: { value: 65534n }, readonlyRootfs: true },
        },
      }),
      sandboxConfig: config,
    });
    await rt.startContainer({ containerId: sec });
    const who = await rt.execSync({ containerId: sec, cmd: ["sh", "-c", "id -u; touch /x 2>/dev/null && echo writable; cat /sys/fs/cgroup/memory.max"], timeout: 30n });
    const whoOut = Buffer.from(who.stdout).toString().split("\n");
    assert.equal(whoOut[0], "65534");
    assert.ok(!whoOut.includes("writable"), "the root filesystem is read-only");
    assert.equal(whoOut[1], String(64 << 20));
    await rt.updateContainerResources({ containerId: sec, linux: { memoryLimitInBytes: 96n << 20n } });
    const after = await rt.execSync({ containerId: sec, cmd: ["cat", "/sys/fs/cgroup/memory.max"], timeout: 30n });
    assert.equal(Buffer.from(after.stdout).toString().trim(), String(96 << 20));
    await rt.removeContainer({ containerId: sec });

    const list = await rt.listContainers({ filter: { podSandboxId: pod } });
    assert.equal(list.containers.length, 2);
    await rt.stopContainer({ containerId: c1, timeout: 2n });
    const stopped = await rt.containerStatus({ containerId: c1 });
    assert.equal(stopped.status?.state, 2 /* CONTAINER_EXITED */);
    assert.notEqual(stopped.status?.exitCode, undefined);
    await rt.removeContainer({ containerId: c1 });
    await rt.removeContainer({ containerId: c1 });
    watching.abort();
    await eventsDone;
    const mine = events.filter((e) => e.endsWith(c1)).map((e) => e.split(":")[0]);
    assert.deepEqual(mine, ["0", "1", "2", "3"], `events of ${c1}: created, started, stopped, deleted`);
    await rt.stopPodSandbox({ podSandboxId: pod });
    await rt.stopPodSandbox({ podSandboxId: pod });
    await rt.removePodSandbox({ podSandboxId: pod });
    await rt.removePodSandbox({ podSandboxId: pod });
    await assert.rejects(rt.podSandboxStatus({ podSandboxId: pod }), code(grpcStatus.NOT_FOUND));
    await assertNothingLeft(join(daemon.root, "state", "sandboxes"));
  });

  it("routes handlers: runc runs a namespace pod; untrusted pods refuse a non-VM handler; unknown handlers are refused", async () => {
    const rt = daemon.client.runtime;
    await assert.rejects(rt.runPodSandbox({ config: podConfig("nope", daemon.logDir), runtimeHandler: "kata" }), code(grpcStatus.INVALID_ARGUMENT));
    await assert.rejects(
      rt.runPodSandbox({ config: podConfig("untrusted", daemon.logDir, { "io.kubernetes.cri.untrusted-workload": "true" }), runtimeHandler: "runc" }),
      code(grpcStatus.INVALID_ARGUMENT),
    );
    const config = podConfig("host-pod", daemon.logDir);
    const { podSandboxId: pod } = await rt.runPodSandbox({ config, runtimeHandler: "runc" });
    const ps = await rt.podSandboxStatus({ podSandboxId: pod });
    assert.equal(ps.status?.runtimeHandler, "runc");
    const { containerId } = await rt.createContainer({ podSandboxId: pod, config: containerConfig("echo", image.reference, ["sh", "-c", "echo from runc; exit 7"]), sandboxConfig: config });
    await rt.startContainer({ containerId });
    const exited = await until("the runc container's exit", async () => {
      const s = await rt.containerStatus({ containerId });
      return s.status?.state === 2 ? s.status : undefined;
    });
    assert.equal(exited.exitCode, 7);
    assert.equal(exited.reason, "Error");
    assert.match(await readFile(exited.logPath, "utf8"), /stdout F from runc/);
    await rt.stopPodSandbox({ podSandboxId: pod });
    await rt.removePodSandbox({ podSandboxId: pod });
  });

  it("refuses bad requests with the right codes", async () => {
    const rt = daemon.client.runtime;
    await assert.rejects(rt.runPodSandbox({ config: { hostname: "x" } }), code(grpcStatus.INVALID_ARGUMENT));
    await assert.rejects(rt.podSandboxStatus({ podSandboxId: "0".repeat(64) }), code(grpcStatus.NOT_FOUND));
    await assert.rejects(rt.containerStatus({ containerId: "missing" }), code(grpcStatus.NOT_FOUND));
    await rt.stopPodSandbox({ podSandboxId: "unknown" });
    await rt.removeContainer({ containerId: "unknown" });
    await assert.rejects(rt.checkpointContainer({ containerId: "x" }), code(grpcStatus.UNIMPLEMENTED));
    const config = podConfig("bad-logs", daemon.logDir);
    const { podSandboxId: pod } = await rt.runPodSandbox({ config, runtimeHandler: "runc" });
    await assert.rejects(
      rt.createContainer({ podSandboxId: pod, config: containerConfig("escape", image.reference, ["true"], { logPath: "../../escape.log" }), sandboxConfig: config }),
      code(grpcStatus.INVALID_ARGUMENT),
    );
    await assert.rejects(
      rt.createContainer({ podSandboxId: pod, config: containerConfig("noimage", "example.invalid/none:1", ["true"]), sandboxConfig: config }),
      code(grpcStatus.NOT_FOUND),
    );
    await rt.stopPodSandbox({ podSandboxId: pod });
    await rt.removePodSandbox({ podSandboxId: pod });
  });

  it("survives kill -9: pods come back, containers in VMs and on the host still run, exec and logs work, exits meanwhile are reported, a VM lost meanwhile is NOTREADY", async () => {
    const rt = () => daemon.client.runtime;
    const hostConfig = podConfig("survivor", daemon.logDir);
    const { podSandboxId: hostPod } = await rt().runPodSandbox({ config: hostConfig, runtimeHandler: "runc" });
    const { containerId } = await rt().createContainer({ podSandboxId: hostPod, config: containerConfig("ticker", image.reference, ["sh", "-c", "while true; do echo tick; sleep 1; done"]), sandboxConfig: hostConfig });
    await rt().startContainer({ containerId });
    const vmConfig = podConfig("vm-survivor", daemon.logDir);
    const { podSandboxId: vmPod } = await rt().runPodSandbox({ config: vmConfig });
    const { containerId: vmTicker } = await rt().createContainer({ podSandboxId: vmPod, config: containerConfig("vm-ticker", image.reference, ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done"]), sandboxConfig: vmConfig });
    await rt().startContainer({ containerId: vmTicker });
    const { containerId: vmQuitter } = await rt().createContainer({ podSandboxId: vmPod, config: containerConfig("vm-quitter", image.reference, ["sh", "-c", "sleep 4; exit 7"]), sandboxConfig: vmConfig });
    await rt().startContainer({ containerId: vmQuitter });
    const lostConfig = podConfig("vm-lost", daemon.logDir);
    const { podSandboxId: lostPod } = await rt().runPodSandbox({ config: lostConfig });
    const tickerLog = join(daemon.logDir, "vm-survivor", "vm-ticker.log");
    await until("the VM container's first line", async () => ((await readFile(tickerLog, "utf8").catch(() => "")).includes("tick 1") ? true : undefined));

    await daemon.kill9();
    // While vmpod is down, one VM dies.
    const lostVm = await processesMentioning(join(daemon.root, "state", "sandboxes", lostPod.slice(0, 32), "vm"));
    assert.ok(lostVm.length > 0, "the lost pod's QEMU runs before it is killed");
    for (const { pid } of lostVm) process.kill(pid, "SIGKILL");
    const linesBefore = (await readFile(tickerLog, "utf8")).split("\n").length;
    await daemon.restart();

    const pods = await rt().listPodSandbox({});
    const state = (id: string) => pods.items.find((p) => p.id === id)?.state;
    assert.equal(state(hostPod), 0 /* READY */);
    assert.equal(state(vmPod), 0 /* READY */, "the VM that outlived the daemon is taken over");
    assert.equal(state(lostPod), 1 /* NOTREADY */, "the VM killed meanwhile is reported lost");
    // The VM pod's containers: the ticker still runs, answers exec, and its log goes on.
    assert.equal((await rt().containerStatus({ containerId: vmTicker })).status?.state, 1 /* RUNNING */);
    const vmOut = await rt().execSync({ containerId: vmTicker, cmd: ["echo", "inside the vm still"], timeout: 60n });
    assert.equal(Buffer.from(vmOut.stdout).toString(), "inside the vm still\n");
    await until("the VM container's log to go on", async () => ((await readFile(tickerLog, "utf8")).split("\n").length > linesBefore + 1 ? true : undefined));
    // The container that exited while vmpod was down (or soon after) reports its code.
    const quit = await until("the quitter's exit", async () => {
      const st = (await rt().containerStatus({ containerId: vmQuitter })).status;
      return st?.state === 2 /* EXITED */ ? st : undefined;
    });
    assert.equal(quit.exitCode, 7);
    // The host pod's container still runs too.
    const st = await rt().containerStatus({ containerId });
    assert.equal(st.status?.state, 1 /* RUNNING */);
    const out = await rt().execSync({ containerId, cmd: ["echo", "still here"], timeout: 30n });
    assert.equal(Buffer.from(out.stdout).toString(), "still here\n");

    await rt().removePodSandbox({ podSandboxId: lostPod });
    for (const pod of [vmPod, hostPod]) {
      await rt().stopPodSandbox({ podSandboxId: pod });
      await rt().removePodSandbox({ podSandboxId: pod });
    }
    await assertNothingLeft(join(daemon.root, "state", "sandboxes"));
  });
});
