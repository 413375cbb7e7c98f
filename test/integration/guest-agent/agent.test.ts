import assert from "node:assert/strict";
import { symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService, Health, HealthCheckResponse_ServingStatus, PortForward } from "../../../src/gen/agent_pb.js";
import { containerSpec, makeBusyboxRootfs, rejectsWith, startAgent, type AgentHandle } from "./harness.js";

describe("guest agent: sandbox and validation", function () {
  let agent: AgentHandle;

  beforeEach(async () => {
    agent = await startAgent();
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed") process.stderr.write(`--- agent log ---\n${agent.log()}\n`);
    await agent.stop();
  });

  const local = (mountPoint: string) => ({ driver: "local", source: "", fstype: "", options: [], mountPoint });

  it("answers health and details before any sandbox, and refuses the rest with FailedPrecondition", async () => {
    const c = agent.client;
    assert.equal((await unary(c, Health.method.check, {})).status, HealthCheckResponse_ServingStatus.SERVING);
    assert.equal((await unary(c, Health.method.version, {})).agentVersion, "0.1.0");
    const details = await unary(c, AgentService.method.getGuestDetails, {});
    assert.equal(details.agentDetails?.initDaemon, false);
    assert.deepEqual(details.agentDetails?.storageHandlers, ["virtio-fs", "local", "scsi", "overlayfs"]);
    // Sets the host's clock here (no namespace isolates CLOCK_REALTIME): to now, off by the call's latency.
    const now = Date.now();
    await unary(c, AgentService.method.setGuestDateTime, { Sec: BigInt(Math.floor(now / 1000)), Usec: BigInt((now % 1000) * 1000) });
    await unary(c, AgentService.method.reseedRandomDev, { data: new Uint8Array(64).fill(7) });

    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "x" }), "FailedPrecondition", /CreateSandbox first/);
    await rejectsWith(unary(c, AgentService.method.startContainer, { containerId: "x" }), "FailedPrecondition");
    await rejectsWith(unary(c, AgentService.method.readStdout, { containerId: "x", len: 1 }), "FailedPrecondition");
    await rejectsWith(unary(c, AgentService.method.getOOMEvent, {}), "FailedPrecondition");
    await rejectsWith(unary(c, PortForward.method.openPort, { port: 80 }), "FailedPrecondition");
    await rejectsWith(unary(c, AgentService.method.destroySandbox, {}), "FailedPrecondition");
    await rejectsWith(unary(c, AgentService.method.setGuestDateTime, { Sec: 1n, Usec: 1_000_000n }), "InvalidArgument");
  });

  it("creates one sandbox at a time, and another after DestroySandbox", async () => {
    const c = agent.client;
    const shared = join(agent.dir, "shared");
    await rejectsWith(unary(c, AgentService.method.createSandbox, { sandboxId: "../up", storages: [] }), "InvalidArgument");
    await rejectsWith(unary(c, AgentService.method.createSandbox, { sandboxId: "s", hostname: "bad_host!", storages: [] }), "InvalidArgument");
    await rejectsWith(
      unary(c, AgentService.method.createSandbox, { sandboxId: "s", storages: [{ ...local(shared), driver: "nfs" }] }),
      "InvalidArgument",
      /unsupported storage driver/,
    );
    await rejectsWith(unary(c, AgentService.method.createSandbox, { sandboxId: "s", storages: [local("relative/dir")] }), "InvalidArgument");
    await rejectsWith(unary(c, AgentService.method.createSandbox, { sandboxId: "s", storages: [local(`${shared}/../escape`)] }), "InvalidArgument");
    await unary(c, AgentService.method.createSandbox, { sandboxId: "s", storages: [local(shared)] });
    await rejectsWith(unary(c, AgentService.method.createSandbox, { sandboxId: "s2", storages: [] }), "AlreadyExists");
    await unary(c, AgentService.method.destroySandbox, {});
    await rejectsWith(unary(c, AgentService.method.startContainer, { containerId: "x" }), "FailedPrecondition");
    await unary(c, AgentService.method.createSandbox, { sandboxId: "s3", storages: [local(shared)] });
    await unary(c, AgentService.method.destroySandbox, {});
  });

  it("refuses bad ids, paths outside the sandbox's storages and unknown objects, with the right kinds", async () => {
    const c = agent.client;
    const shared = join(agent.dir, "shared");
    await unary(c, AgentService.method.createSandbox, { sandboxId: "s", storages: [local(shared)] });
    const rootfs = join(shared, "ok", "rootfs");
    await makeBusyboxRootfs(rootfs);
    const cgroupsPath = `${agent.cgroupParent}/ok`;
    const spec = (path: string, extra: Partial<Parameters<typeof containerSpec>[2]> = {}) => containerSpec(path, ["sleep", "1000"], { cgroupsPath, ...extra });

    for (const bad of ["", "../x", "a/b", ".hidden", "-flag", "x".repeat(129)]) {
      await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: bad, OCI: spec(rootfs) }), "InvalidArgument", /container id/);
    }
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", execId: "../e", OCI: spec(rootfs) }), "InvalidArgument", /exec id/);
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c" }), "InvalidArgument", /OCI/);

    const outside = join(agent.dir, "outside", "rootfs");
    await makeBusyboxRootfs(outside);
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", OCI: spec(outside) }), "InvalidArgument", /outside/);
    await symlink(outside, join(shared, "sneaky"));
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", OCI: spec(join(shared, "sneaky")) }), "InvalidArgument", /outside/);
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", OCI: spec("ok/rootfs") }), "InvalidArgument", /absolute/);
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", OCI: spec(join(shared, "missing")) }), "InvalidArgument", /cannot be resolved/);
    await rejectsWith(
      unary(c, AgentService.method.createContainer, {
        containerId: "c",
        OCI: spec(rootfs, { mounts: [{ destination: "/host-etc", type: "bind", source: "/etc", options: ["rbind", "ro"] }] }),
      }),
      "InvalidArgument",
      /source of the mount on \/host-etc/,
    );
    const withNsPath = spec(rootfs, { namespaces: [{ Type: "mount", Path: "" }, { Type: "pid", Path: "/proc/1/ns/pid" }] });
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "c", OCI: withNsPath }), "InvalidArgument", /names a path/);
    const ownStorage = join(agent.dir, "own");
    await rejectsWith(
      unary(c, AgentService.method.createContainer, { containerId: "c", storages: [{ ...local(ownStorage), driver: "bind" }], OCI: spec(rootfs) }),
      "InvalidArgument",
      /unsupported storage driver/,
    );
    // A storage the container brings is an allowed place for its root.
    await makeBusyboxRootfs(join(ownStorage, "rootfs"));
    await unary(c, AgentService.method.createContainer, {
      containerId: "own",
      storages: [local(ownStorage)],
      OCI: containerSpec(join(ownStorage, "rootfs"), ["true"], { cgroupsPath: `${agent.cgroupParent}/own` }),
    });
    await unary(c, AgentService.method.removeContainer, { containerId: "own" });

    await unary(c, AgentService.method.createContainer, { containerId: "ok", OCI: spec(rootfs) });
    await rejectsWith(unary(c, AgentService.method.createContainer, { containerId: "ok", OCI: spec(rootfs) }), "AlreadyExists");
    await rejectsWith(unary(c, AgentService.method.startContainer, { containerId: "nope" }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.waitProcess, { containerId: "nope", execId: "" }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.statsContainer, { containerId: "nope" }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.removeContainer, { containerId: "nope" }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.readStdout, { containerId: "ok", execId: "nope", len: 10 }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.writeStdin, { containerId: "ok", execId: "nope", data: new Uint8Array(1) }), "NotFound");
    await rejectsWith(unary(c, AgentService.method.signalProcess, { containerId: "ok", execId: "", signal: 0 }), "InvalidArgument", /signal/);
    await rejectsWith(unary(c, AgentService.method.signalProcess, { containerId: "ok", execId: "", signal: 65 }), "InvalidArgument", /signal/);
    await rejectsWith(unary(c, AgentService.method.execProcess, { containerId: "ok", execId: "a/b", process: { Args: ["true"] } }), "InvalidArgument", /exec id/);
    await rejectsWith(unary(c, AgentService.method.execProcess, { containerId: "ok", execId: "e" }), "InvalidArgument", /without a process/);
    await rejectsWith(unary(c, AgentService.method.startContainer, { containerId: "ok" }).then(() => unary(c, AgentService.method.startContainer, { containerId: "ok" })), "FailedPrecondition");
    await unary(c, AgentService.method.removeContainer, { containerId: "ok" });

    // An unexpected failure (mkdir under a file) is Internal and the agent carries on.
    await writeFile(join(agent.dir, "a-file"), "");
    await rejectsWith(
      unary(c, AgentService.method.createContainer, { containerId: "c", storages: [local(join(agent.dir, "a-file", "sub"))], OCI: spec(rootfs) }),
      "Internal",
    );
    assert.equal((await unary(c, Health.method.check, {})).status, HealthCheckResponse_ServingStatus.SERVING);
    await unary(c, AgentService.method.destroySandbox, {});
  });
});
