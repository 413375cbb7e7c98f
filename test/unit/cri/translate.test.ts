/**
 * Translation between CRI messages and the sandbox and image domains, and
 * the checks at the edge: what a valid config becomes, which field a bad
 * one names, and that statuses give kubelet back what it gave (metadata,
 * labels, annotations, handler) with the right enums and timestamps.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import {
  ContainerState,
  LinuxContainerResourcesSchema,
  MountPropagation,
  NamespaceMode,
  PodSandboxConfigSchema,
  PodSandboxState,
  Protocol,
  SecurityProfile_ProfileType,
  Signal,
} from "../../../src/gen/cri/api_pb.js";
import { kindOf, messageOf } from "../../../src/common/errors.js";
import {
  containerConfigFromCri,
  containerFilterFromCri,
  containerStatusToCri,
  containerToCri,
  signalFromName,
  signalName,
} from "../../../src/cri/translate-container.js";
import { podConfigFromCri, podFilterFromCri, podInfoToCri, podStatusToCri, podToCri } from "../../../src/cri/translate-pod.js";
import { ociResourcesToCri, resourcesFromCri, resourcesToCri } from "../../../src/cri/translate-resources.js";
import { credentialsFromCri, filesystemUsageToCri, imageToCri, imageUser } from "../../../src/cri/translate-image.js";
import { CpuRates } from "../../../src/cri/translate-stats.js";
import type { ContainerStatus, PodStatus } from "../../../src/sandbox/types.js";
import { busyboxRecord, containerConfig, podConfig } from "./fakes.js";

function refused(fn: () => unknown, field: string, kind = "InvalidArgument"): void {
  assert.throws(fn, (err: unknown) => {
    assert.equal(kindOf(err), kind, messageOf(err));
    assert.match(messageOf(err), new RegExp(field.replace(/[.[\]]/g, "\\$&")));
    return true;
  });
}

describe("cri translate: pods", () => {
  it("turns a full PodSandboxConfig into a PodConfig", () => {
    const config = podConfigFromCri(
      podConfig({
        dnsConfig: { servers: ["10.96.0.10"], searches: ["default.svc.cluster.local"], options: ["ndots:5"] },
        portMappings: [{ protocol: Protocol.UDP, containerPort: 53, hostPort: 5353, hostIp: "127.0.0.1" }],
        linux: {
          cgroupParent: "/kubepods/besteffort/poduid-1",
          sysctls: { "net.ipv4.ip_forward": "1" },
          overhead: { memoryLimitInBytes: 64n << 20n },
          resources: { cpuQuota: 50_000n, cpuPeriod: 100_000n, memoryLimitInBytes: 256n << 20n, oomScoreAdj: 1000n },
          securityContext: {
            namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.CONTAINER, ipc: NamespaceMode.POD },
            runAsUser: { value: 1000n },
            runAsGroup: { value: 2000n },
            supplementalGroups: [3000n],
            readonlyRootfs: true,
            privileged: true,
            seccomp: { profileType: SecurityProfile_ProfileType.RuntimeDefault },
          },
        },
      }),
    );
    assert.deepEqual(config.metadata, { name: "web", uid: "uid-1", namespace: "default", attempt: 1 });
    assert.equal(config.logDirectory, "/var/log/pods/default_web_uid-1");
    assert.deepEqual(config.dns, { servers: ["10.96.0.10"], searches: ["default.svc.cluster.local"], options: ["ndots:5"] });
    assert.deepEqual(config.portMappings, [{ protocol: "UDP", containerPort: 53, hostPort: 5353, hostIp: "127.0.0.1" }]);
    assert.deepEqual(config.namespaces, { network: "NODE", pid: "CONTAINER", ipc: "POD" });
    assert.equal(config.cgroupParent, "/kubepods/besteffort/poduid-1");
    assert.deepEqual(config.sysctls, { "net.ipv4.ip_forward": "1" });
    assert.deepEqual(config.overhead, { oomScoreAdj: 0, memoryLimitBytes: 64 << 20 });
    assert.deepEqual(config.resources, { oomScoreAdj: 1000, cpuQuota: 50_000, cpuPeriod: 100_000, memoryLimitBytes: 256 << 20 });
    assert.equal(config.runAsUser, 1000);
    assert.equal(config.runAsGroup, 2000);
    assert.deepEqual(config.supplementalGroups, [3000]);
    assert.equal(config.readonlyRootfs, true);
    assert.equal(config.privileged, true);
    assert.deepEqual(config.seccomp, { type: "runtime-default" });
    assert.deepEqual(config.annotations, { "io.kubernetes.cri.untrusted-workload": "true" });
  });

  it("defaults what crictl leaves out", () => {
    const config = podConfigFromCri(create(PodSandboxConfigSchema, { metadata: { name: "a", uid: "b", namespace: "c" } }));
    assert.deepEqual(config.namespaces, { network: "POD", pid: "POD", ipc: "POD" });
    assert.equal(config.logDirectory, "");
    assert.equal(config.privileged, false);
    assert.equal(config.dns, undefined);
    assert.equal(config.resources, undefined);
  });

  it("refuses bad pod configs, naming the field", () => {
    refused(() => podConfigFromCri(undefined), "config");
    refused(() => podConfigFromCri(podConfig({ metadata: undefined })), "config.metadata");
    refused(() => podConfigFromCri(podConfig({ metadata: { name: "", uid: "u", namespace: "n" } })), "config.metadata.name");
    refused(() => podConfigFromCri(podConfig({ metadata: { name: "x", uid: "", namespace: "n" } })), "config.metadata.uid");
    refused(() => podConfigFromCri(podConfig({ metadata: { name: "x", uid: "u", namespace: "" } })), "config.metadata.namespace");
    refused(() => podConfigFromCri(podConfig({ logDirectory: "var/log/pods/x" })), "config.log_directory");
    refused(() => podConfigFromCri(podConfig({ logDirectory: "/var/log/../../etc" })), "config.log_directory");
    refused(() => podConfigFromCri(podConfig({ portMappings: [{ containerPort: 70000 }] })), "config.port_mappings[0].container_port");
    refused(() => podConfigFromCri(podConfig({ linux: { securityContext: { runAsGroup: { value: 5n } } } })), "config.linux.security_context.run_as_group");
    refused(
      () => podConfigFromCri(podConfig({ linux: { securityContext: { namespaceOptions: { usernsOptions: { mode: NamespaceMode.POD, uids: [{ hostId: 100000, containerId: 0, length: 65536 }] } } } } })),
      "userns_options",
    );
    refused(() => podConfigFromCri(podConfig({ linux: { securityContext: { seccompProfilePath: "bogus" } } })), "config.linux.security_context.seccomp");
  });

  it("reads the deprecated seccomp string", () => {
    const config = podConfigFromCri(podConfig({ linux: { securityContext: { seccompProfilePath: "localhost/profiles/audit.json" } } }));
    assert.deepEqual(config.seccomp, { type: "localhost", localhostRef: "profiles/audit.json" });
  });

  const pod: PodStatus = {
    id: "p1",
    config: podConfigFromCri(podConfig()),
    handler: "runc",
    state: "notready",
    createdAt: 1_700_000_000_123_456_789n,
    ip: "10.88.0.5",
    additionalIps: ["fd00::5"],
    info: { pid: 7 },
  };

  it("gives metadata, labels, annotations and handler back in the status and the list", () => {
    const status = podStatusToCri(pod);
    assert.equal(status.id, "p1");
    assert.deepEqual(status.metadata, { name: "web", uid: "uid-1", namespace: "default", attempt: 1 });
    assert.equal(status.state, PodSandboxState.SANDBOX_NOTREADY);
    assert.equal(status.createdAt, 1_700_000_000_123_456_789n);
    assert.deepEqual(status.network, { ip: "10.88.0.5", additionalIps: [{ ip: "fd00::5" }] });
    assert.deepEqual(status.labels, { app: "web" });
    assert.deepEqual(status.annotations, { "io.kubernetes.cri.untrusted-workload": "true" });
    assert.equal(status.runtimeHandler, "runc");
    const item = podToCri({ ...pod, state: "ready" });
    assert.equal(item.state, PodSandboxState.SANDBOX_READY);
    assert.equal(item.runtimeHandler, "runc");
    assert.deepEqual(item.labels, { app: "web" });
    const info = JSON.parse(podInfoToCri(pod).info ?? "") as { pid: number; runtimeHandler: string; config: { metadata: { name: string } } };
    assert.equal(info.pid, 7);
    assert.equal(info.runtimeHandler, "runc");
    assert.equal(info.config.metadata.name, "web");
  });

  it("translates filters, leaving out what is unset", () => {
    assert.equal(podFilterFromCri(undefined), undefined);
    assert.deepEqual(podFilterFromCri({ id: "", labelSelector: {} } as never), {});
    assert.deepEqual(podFilterFromCri({ id: "p1", state: { state: PodSandboxState.SANDBOX_NOTREADY }, labelSelector: { app: "web" } } as never), {
      id: "p1",
      state: "notready",
      labels: { app: "web" },
    });
  });
});

describe("cri translate: containers", () => {
  it("turns a ContainerConfig into the domain's", () => {
    const config = containerConfigFromCri(
      containerConfig({
        workingDir: "/srv",
        envs: [{ key: "A", value: new TextEncoder().encode("1=2") }],
        mounts: [{ containerPath: "/data", hostPath: "/var/lib/kubelet/pods/x/volumes/data", readonly: true, propagation: MountPropagation.PROPAGATION_HOST_TO_CONTAINER }],
        devices: [{ containerPath: "/dev/fuse", hostPath: "/dev/fuse", permissions: "rwm" }],
        stdin: true,
        tty: true,
        stopSignal: Signal.SIGRTMINPLUS3,
        linux: {
          resources: { cpuShares: 512n, memoryLimitInBytes: 1n << 30n, unified: { "memory.high": "max" } },
          securityContext: {
            capabilities: { addCapabilities: ["NET_ADMIN"], dropCapabilities: ["ALL"] },
            runAsUsername: "nobody",
            noNewPrivs: true,
            maskedPaths: ["/proc/kcore"],
            apparmorProfile: "runtime/default",
          },
        },
      }),
    );
    assert.deepEqual(config.metadata, { name: "app", attempt: 0 });
    assert.equal(config.image, "busybox");
    assert.deepEqual(config.envs, [{ key: "A", value: "1=2" }]);
    assert.deepEqual(config.mounts, [{ containerPath: "/data", hostPath: "/var/lib/kubelet/pods/x/volumes/data", readonly: true, selinuxRelabel: false, propagation: "host-to-container" }]);
    assert.deepEqual(config.devices, [{ containerPath: "/dev/fuse", hostPath: "/dev/fuse", permissions: "rwm" }]);
    assert.equal(config.logPath, "app/0.log");
    assert.equal(config.stopSignal, "SIGRTMIN+3");
    assert.deepEqual(config.resources, { oomScoreAdj: 0, cpuShares: 512, memoryLimitBytes: 1 << 30, unified: { "memory.high": "max" } });
    assert.deepEqual(config.security.capabilities, { add: ["NET_ADMIN"], drop: ["ALL"], addAmbient: [] });
    assert.equal(config.security.runAsUsername, "nobody");
    assert.equal(config.security.noNewPrivs, true);
    assert.deepEqual(config.security.apparmor, { type: "runtime-default" });
    assert.deepEqual(config.security.namespaces, { network: "POD", pid: "POD", ipc: "POD" });
  });

  it("refuses bad container configs, naming the field", () => {
    refused(() => containerConfigFromCri(undefined), "config");
    refused(() => containerConfigFromCri(containerConfig({ metadata: undefined })), "config.metadata");
    refused(() => containerConfigFromCri(containerConfig({ metadata: { name: "" } })), "config.metadata.name");
    refused(() => containerConfigFromCri(containerConfig({ image: undefined })), "config.image");
    refused(() => containerConfigFromCri(containerConfig({ image: { image: "" } })), "config.image.image");
    refused(() => containerConfigFromCri(containerConfig({ logPath: "/var/log/app.log" })), "config.log_path");
    refused(() => containerConfigFromCri(containerConfig({ logPath: "../../etc/passwd" })), "config.log_path");
    refused(() => containerConfigFromCri(containerConfig({ logPath: "a/../../b.log" })), "config.log_path");
    refused(() => containerConfigFromCri(containerConfig({ mounts: [{ containerPath: "data", hostPath: "/x" }] })), "config.mounts[0].container_path");
    refused(() => containerConfigFromCri(containerConfig({ mounts: [{ containerPath: "/data", hostPath: "x" }] })), "config.mounts[0].host_path");
    refused(() => containerConfigFromCri(containerConfig({ mounts: [{ containerPath: "/data", image: { image: "busybox" } }] })), "config.mounts[0].image", "Unimplemented");
    refused(() => containerConfigFromCri(containerConfig({ envs: [{ key: "", value: new Uint8Array() }] })), "config.envs[0].key");
    refused(() => containerConfigFromCri(containerConfig({ linux: { securityContext: { runAsUser: { value: 1n }, runAsUsername: "root" } } })), "run_as_username");
    refused(() => containerConfigFromCri(containerConfig({ linux: { securityContext: { namespaceOptions: { pid: NamespaceMode.TARGET } } } })), "target_id");
    refused(() => containerConfigFromCri(containerConfig({ CDIDevices: [{ name: "vendor.com/gpu=0" }] })), "CDI_devices", "Unimplemented");
  });

  it("keeps a normal relative log path and allows none", () => {
    assert.equal(containerConfigFromCri(containerConfig({ logPath: "app//0.log" })).logPath, "app/0.log");
    assert.equal(containerConfigFromCri(containerConfig({ logPath: "" })).logPath, "");
  });

  it("maps signals both ways", () => {
    assert.equal(signalName(Signal.RUNTIME_DEFAULT), undefined);
    assert.equal(signalName(Signal.SIGTERM), "SIGTERM");
    assert.equal(signalName(Signal.SIGRTMAXMINUS2), "SIGRTMAX-2");
    assert.equal(signalFromName("SIGRTMAX-2"), Signal.SIGRTMAXMINUS2);
    assert.equal(signalFromName("SIGQUIT"), Signal.SIGQUIT);
    assert.equal(signalFromName(undefined), Signal.RUNTIME_DEFAULT);
  });

  const status: ContainerStatus = {
    id: "c1",
    podId: "p1",
    config: containerConfigFromCri(containerConfig({ annotations: { "io.kubernetes.container.hash": "abc" }, stopSignal: Signal.SIGINT })),
    imageId: "sha256:" + "c".repeat(64),
    imageRef: "docker.io/library/busybox@sha256:" + "d".repeat(64),
    state: "exited",
    createdAt: 1n,
    startedAt: 2n,
    finishedAt: 3n,
    exitCode: 137,
    reason: "OOMKilled",
    message: "memory limit reached",
    logPath: "/var/log/pods/default_web_uid-1/app/0.log",
    resources: { cpu: { shares: 2, quota: 10000, period: 100000 }, memory: { limit: 1 << 20 } },
    info: {},
  };

  it("reports state, timestamps, exit code, reason, image and log path as kubelet reads them", () => {
    const s = containerStatusToCri(status);
    assert.equal(s.state, ContainerState.CONTAINER_EXITED);
    assert.deepEqual([s.createdAt, s.startedAt, s.finishedAt], [1n, 2n, 3n]);
    assert.equal(s.exitCode, 137);
    assert.equal(s.reason, "OOMKilled");
    assert.equal(s.message, "memory limit reached");
    assert.deepEqual(s.image, { image: "busybox", userSpecifiedImage: "busybox" });
    assert.equal(s.imageRef, status.imageRef);
    assert.equal(s.imageId, status.imageId);
    assert.equal(s.logPath, "/var/log/pods/default_web_uid-1/app/0.log");
    assert.deepEqual(s.labels, { tier: "front" });
    assert.deepEqual(s.annotations, { "io.kubernetes.container.hash": "abc" });
    assert.equal(s.stopSignal, Signal.SIGINT);
    assert.deepEqual(s.resources?.linux, { cpuPeriod: 100000n, cpuQuota: 10000n, cpuShares: 2n, cpusetCpus: "", cpusetMems: "", memoryLimitInBytes: 1048576n, memorySwapLimitInBytes: 0n });
    const item = containerToCri({ ...status, state: "running" });
    assert.equal(item.state, ContainerState.CONTAINER_RUNNING);
    assert.equal(item.podSandboxId, "p1");
    assert.equal(item.imageId, status.imageId);
    for (const [state, expected] of [
      ["created", ContainerState.CONTAINER_CREATED],
      ["unknown", ContainerState.CONTAINER_UNKNOWN],
    ] as const) {
      assert.equal(containerStatusToCri({ ...status, state }).state, expected);
    }
  });

  it("translates container filters", () => {
    assert.deepEqual(containerFilterFromCri({ id: "", podSandboxId: "p1", state: { state: ContainerState.CONTAINER_RUNNING }, labelSelector: { a: "b" } } as never), {
      podId: "p1",
      state: "running",
      labels: { a: "b" },
    });
  });
});

describe("cri translate: resources, images, stats", () => {
  it("treats 0 as unset and round-trips resources", () => {
    const r = resourcesFromCri(create(LinuxContainerResourcesSchema, { cpuQuota: -1n, oomScoreAdj: -997n, hugepageLimits: [{ pageSize: "2MB", limit: 4n << 20n }] }), "linux");
    assert.deepEqual(r, { oomScoreAdj: -997, cpuQuota: -1, hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }] });
    const back = resourcesToCri(r);
    assert.equal(back.cpuQuota, -1n);
    assert.equal(back.memoryLimitInBytes, 0n);
    refused(() => resourcesFromCri(create(LinuxContainerResourcesSchema, { memoryLimitInBytes: -5n }), "linux"), "linux");
    assert.deepEqual(ociResourcesToCri({}).memoryLimitInBytes, 0n);
  });

  it("reports the image's user as a uid or a name", () => {
    assert.deepEqual(imageUser("1000:1000"), { uid: 1000n, username: "" });
    assert.deepEqual(imageUser("nobody"), { username: "nobody" });
    assert.deepEqual(imageUser(""), { username: "" });
    const image = imageToCri(busyboxRecord({ pinned: true }));
    assert.equal(image.id, "sha256:" + "a".repeat(64));
    assert.equal(image.size, 2_000_000n);
    assert.deepEqual(image.uid, { value: 1000n });
    assert.equal(image.pinned, true);
    assert.deepEqual(image.spec, { image: image.id });
  });

  it("passes only the credentials given", () => {
    assert.equal(credentialsFromCri(undefined), undefined);
    assert.equal(credentialsFromCri({ username: "", password: "", auth: "", serverAddress: "r", identityToken: "", registryToken: "" } as never), undefined);
    assert.deepEqual(credentialsFromCri({ username: "u", password: "p", auth: "", serverAddress: "", identityToken: "", registryToken: "t" } as never), {
      username: "u",
      password: "p",
      registryToken: "t",
    });
  });

  it("reports filesystem usage in nanoseconds", () => {
    const u = filesystemUsageToCri({ mountpoint: "/var/lib/vmpod", usedBytes: 10, inodesUsed: 2, timestamp: 1500 });
    assert.equal(u.timestamp, 1_500_000_000n);
    assert.deepEqual(u.fsId, { mountpoint: "/var/lib/vmpod" });
    assert.deepEqual(u.usedBytes, { value: 10n });
  });

  it("computes CPU rates from successive samples", () => {
    const rates = new CpuRates();
    assert.equal(rates.rate("c1", 1_000_000_000n, 0n), undefined);
    assert.equal(rates.rate("c1", 2_000_000_000n, 500_000_000n), 500_000_000n);
    assert.equal(rates.rate("c1", 2_000_000_000n, 600_000_000n), undefined, "same timestamp: no rate");
    assert.equal(rates.rate("c1", 3_000_000_000n, 100n), undefined, "counter went back (restart): no rate");
    rates.prune(3_000_000_000n + 11n * 60n * 1_000_000_000n);
    assert.equal(rates.size, 0);
  });
});
