/**
 * The container spec builder, rule by rule: command and environment from
 * the config and the image, annotations, mounts and their order, namespaces
 * and cgroups per handler, resources, sysctls, and what it refuses.
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { specToOci } from "../../../guest/agent/oci-spec.js";
import { specToProto } from "../../../src/agent/translate.js";
import { SpecSchema } from "../../../src/gen/agent_pb.js";
import { buildContainerSpec, mergeEnv, processArgs } from "../../../src/sandbox/container-spec.js";
import { CONTAINER_ID, POD_ID, container, hostInput, image, input, pod } from "./container-spec-fixtures.js";

const invalid = (pattern: RegExp) => (err: Error & { kind?: string }) => {
  assert.equal(err.kind, "InvalidArgument", err.message);
  assert.match(err.message, pattern);
  return true;
};

describe("container spec", () => {
  describe("process arguments", () => {
    const img = image({ entrypoint: ["/entry"], cmd: ["default-arg"] });
    it("uses the image's entrypoint and cmd when the config has neither", () => {
      assert.deepEqual(processArgs(container(), img), ["/entry", "default-arg"]);
    });
    it("replaces the entrypoint and drops cmd for a config command", () => {
      assert.deepEqual(processArgs(container({ command: ["/bin/run"] }), img), ["/bin/run"]);
      assert.deepEqual(processArgs(container({ command: ["/bin/run"], args: ["-v"] }), img), ["/bin/run", "-v"]);
    });
    it("replaces only cmd for config args alone", () => {
      assert.deepEqual(processArgs(container({ args: ["x", "y"] }), img), ["/entry", "x", "y"]);
    });
    it("treats an entrypoint of one empty string as none", () => {
      assert.deepEqual(processArgs(container(), image({ entrypoint: [""], cmd: ["sh"] })), ["sh"]);
    });
    it("refuses a container with no command at all", () => {
      assert.throws(() => processArgs(container(), image({ cmd: [] })), invalid(/no command/));
    });
  });

  describe("environment", () => {
    it("lets later lists win per key, in place", () => {
      assert.deepEqual(mergeEnv(["A=1", "B=2"], ["B=3", "C=4"], ["A=5"]), ["A=5", "B=3", "C=4"]);
    });
    it("is the default PATH, HOSTNAME, the image's, then the config's", async () => {
      const spec = await buildContainerSpec(
        input({ image: image({ env: ["PATH=/bin:/usr/bin", "LANG=C"] }), container: container({ envs: [{ key: "LANG", value: "en" }, { key: "X", value: "a=b" }] }) }),
      );
      assert.deepEqual(spec.process?.env, ["PATH=/bin:/usr/bin", "HOSTNAME=web-host", "LANG=en", "X=a=b"]);
    });
    it("adds TERM=xterm with a terminal", async () => {
      const spec = await buildContainerSpec(input({ container: container({ tty: true }) }));
      assert.equal(spec.process?.terminal, true);
      assert.ok(spec.process?.env?.includes("TERM=xterm"));
    });
  });

  describe("working directory", () => {
    it("is the config's, else the image's, else /", async () => {
      assert.equal((await buildContainerSpec(input({ container: container({ workingDir: "/w" }), image: image({ workingDir: "/img" }) }))).process?.cwd, "/w");
      assert.equal((await buildContainerSpec(input({ image: image({ workingDir: "/img" }) }))).process?.cwd, "/img");
      assert.equal((await buildContainerSpec(input())).process?.cwd, "/");
    });
  });

  describe("annotations", () => {
    it("name the container, its pod and image as CRI-O and containerd do; the config's cannot override them", async () => {
      const spec = await buildContainerSpec(
        input({ container: container({ annotations: { mine: "yes", "io.kubernetes.cri-o.ContainerType": "sandbox" } }), imageName: "busybox:1.36" }),
      );
      assert.deepEqual(spec.annotations, {
        mine: "yes",
        "io.kubernetes.cri-o.ContainerType": "container",
        "io.kubernetes.cri-o.SandboxID": POD_ID,
        "io.kubernetes.cri.container-type": "container",
        "io.kubernetes.cri.sandbox-id": POD_ID,
        "io.kubernetes.cri.container-name": "app",
        "io.kubernetes.cri.image-name": "busybox:1.36",
        "io.kubernetes.cri.sandbox-name": "web",
        "io.kubernetes.cri.sandbox-namespace": "default",
        "io.kubernetes.cri.sandbox-uid": "uid-1",
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": "uid-1",
      });
    });
  });

  describe("root and hostname", () => {
    it("uses the given root, read-only as asked", async () => {
      const spec = await buildContainerSpec(input({ container: container({}, { readonlyRootfs: true }) }));
      assert.deepEqual(spec.root, { path: "/run/vmpod/containers/c/rootfs", readonly: true });
    });
    it("refuses a relative root", async () => {
      await assert.rejects(buildContainerSpec(input({ rootPath: "rootfs" })), invalid(/root path/));
    });
    it("is the pod's hostname, none for a host container in the node's network", async () => {
      assert.equal((await buildContainerSpec(input())).hostname, "web-host");
      const hostNet = container({}, { namespaces: { network: "NODE", pid: "CONTAINER", ipc: "POD" } });
      assert.equal((await buildContainerSpec(hostInput({ container: hostNet }))).hostname, undefined);
    });
  });

  describe("mounts", () => {
    const dests = (spec: { mounts?: { destination: string }[] }) => spec.mounts?.map((m) => m.destination);
    it("has the runtime's defaults, /sys and the cgroup filesystem read-only", async () => {
      const spec = await buildContainerSpec(input());
      assert.deepEqual(dests(spec), ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"]);
      assert.ok(spec.mounts?.find((m) => m.destination === "/sys")?.options?.includes("ro"));
      assert.ok(spec.mounts?.find((m) => m.destination === "/sys/fs/cgroup")?.options?.includes("ro"));
    });
    it("binds the config's mounts with their propagation, parents first, after the defaults", async () => {
      const spec = await buildContainerSpec(
        input({
          mounts: [
            { containerPath: "/data/sub/deeper", source: "/g/3", readonly: false, propagation: "private" },
            { containerPath: "/data", source: "/g/1", readonly: true, propagation: "host-to-container" },
            { containerPath: "/data/sub/", source: "/g/2", readonly: false, propagation: "bidirectional" },
          ],
        }),
      );
      assert.deepEqual(spec.mounts?.slice(7), [
        { destination: "/data", type: "bind", source: "/g/1", options: ["rbind", "rslave", "ro"] },
        { destination: "/data/sub", type: "bind", source: "/g/2", options: ["rbind", "rshared", "rw"] },
        { destination: "/data/sub/deeper", type: "bind", source: "/g/3", options: ["rbind", "rprivate", "rw"] },
      ]);
      assert.equal(spec.linux?.rootfsPropagation, "rshared");
    });
    it("makes the root rslave for a host-to-container mount", async () => {
      const spec = await buildContainerSpec(input({ mounts: [{ containerPath: "/m", source: "/g", readonly: false, propagation: "host-to-container" }] }));
      assert.equal(spec.linux?.rootfsPropagation, "rslave");
    });
    it("lets a config mount replace a default, and one on /dev replace all of /dev", async () => {
      const shm = await buildContainerSpec(input({ mounts: [{ containerPath: "/dev/shm", source: "/g/shm", readonly: false, propagation: "private" }] }));
      assert.deepEqual(dests(shm), ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/dev/shm"]);
      const dev = await buildContainerSpec(input({ mounts: [{ containerPath: "/dev", source: "/g/dev", readonly: false, propagation: "private" }] }));
      assert.deepEqual(dests(dev), ["/proc", "/sys", "/sys/fs/cgroup", "/dev"]);
    });
    it("binds the pod's files unless the config mounts those paths, read-only with a read-only root", async () => {
      const podFiles = { hostname: "/g/hostname", resolvConf: "/g/resolv.conf", hosts: "/g/hosts" };
      const spec = await buildContainerSpec(
        input({
          podFiles,
          container: container({ mounts: [{ containerPath: "/etc/hosts", hostPath: "/var/lib/kubelet/hosts", readonly: false, selinuxRelabel: false, propagation: "private" }] }, { readonlyRootfs: true }),
          mounts: [{ containerPath: "/etc/hosts", source: "/g/kubelet-hosts", readonly: false, propagation: "private" }],
        }),
      );
      assert.deepEqual(spec.mounts?.slice(7), [
        { destination: "/etc/hosts", type: "bind", source: "/g/kubelet-hosts", options: ["rbind", "rprivate", "rw"] },
        { destination: "/etc/hostname", type: "bind", source: "/g/hostname", options: ["rbind", "rprivate", "ro"] },
        { destination: "/etc/resolv.conf", type: "bind", source: "/g/resolv.conf", options: ["rbind", "rprivate", "ro"] },
      ]);
    });
    it("binds the pod's shared memory at /dev/shm when given", async () => {
      const spec = await buildContainerSpec(input({ podShm: "/run/vmpod/shm" }));
      const shm = spec.mounts?.filter((m) => m.destination === "/dev/shm");
      assert.deepEqual(shm, [{ destination: "/dev/shm", type: "bind", source: "/run/vmpod/shm", options: ["rbind", "rprivate", "rw", "nosuid", "nodev", "noexec"] }]);
    });
    it("gives a host container in the node's IPC namespace the node's /dev/shm", async () => {
      const spec = await buildContainerSpec(hostInput({ container: container({}, { namespaces: { network: "POD", pid: "CONTAINER", ipc: "NODE" } }) }));
      assert.equal(spec.mounts?.find((m) => m.destination === "/dev/shm")?.source, "/dev/shm");
    });
    it("refuses relative, duplicate and root destinations and relative sources", async () => {
      const m = (containerPath: string, source = "/g") => ({ containerPath, source, readonly: false, propagation: "private" as const });
      await assert.rejects(buildContainerSpec(input({ mounts: [m("data")] })), invalid(/not an absolute path/));
      await assert.rejects(buildContainerSpec(input({ mounts: [m("/a"), m("/a/")] })), invalid(/two mounts on \/a/));
      await assert.rejects(buildContainerSpec(input({ mounts: [m("/")] })), invalid(/mount on \//));
      await assert.rejects(buildContainerSpec(input({ mounts: [m("/a", "rel")] })), invalid(/source of the mount on \/a/));
    });
  });

  describe("namespaces", () => {
    const types = (spec: { linux?: { namespaces?: { type: string; path?: string }[] } }) => spec.linux?.namespaces;
    it("in a pod VM: own pid, mount and cgroup namespaces; the VM's network, IPC and UTS", async () => {
      assert.deepEqual(types(await buildContainerSpec(input())), [{ type: "pid" }, { type: "mount" }, { type: "cgroup" }]);
    });
    it("in a pod VM with PID mode POD: the guest's PID namespace, shared by the pod's containers", async () => {
      const spec = await buildContainerSpec(input({ container: container({}, { namespaces: { network: "POD", pid: "POD", ipc: "POD" } }) }));
      assert.deepEqual(types(spec), [{ type: "mount" }, { type: "cgroup" }]);
    });
    it("in a pod VM: refuses the node's PID or IPC namespace and TARGET", async () => {
      const with_ = (pid: "NODE" | "TARGET" | "POD", ipc: "NODE" | "POD") => input({ container: container({}, { namespaces: { network: "POD", pid, ipc } }) });
      await assert.rejects(buildContainerSpec(with_("NODE", "POD")), invalid(/node's PID namespace/));
      await assert.rejects(buildContainerSpec(with_("POD", "NODE")), invalid(/node's IPC namespace/));
      await assert.rejects(buildContainerSpec(with_("TARGET", "POD")), invalid(/TARGET/));
    });
    it("on the host: joins the pod's namespaces by path, a new pid namespace of its own", async () => {
      assert.deepEqual(types(await buildContainerSpec(hostInput())), [
        { type: "network", path: "/proc/42/ns/net" },
        { type: "uts", path: "/proc/42/ns/uts" },
        { type: "ipc", path: "/proc/42/ns/ipc" },
        { type: "pid" },
        { type: "mount" },
      ]);
    });
    it("on the host: the pod's PID namespace for POD, the target's for TARGET, the node's for NODE", async () => {
      const mode = (pid: "POD" | "TARGET" | "NODE", network: "POD" | "NODE" = "POD", ipc: "POD" | "NODE" = "POD") =>
        hostInput({ container: container({}, { namespaces: { network, pid, ipc } }), targetPidNamespace: "/proc/77/ns/pid" });
      assert.deepEqual(types(await buildContainerSpec(mode("POD")))?.[3], { type: "pid", path: "/proc/42/ns/pid" });
      assert.deepEqual(types(await buildContainerSpec(mode("TARGET")))?.[3], { type: "pid", path: "/proc/77/ns/pid" });
      assert.deepEqual(types(await buildContainerSpec(mode("NODE", "NODE", "NODE"))), [{ type: "mount" }]);
    });
    it("on the host: refuses a pod namespace without a path", async () => {
      await assert.rejects(buildContainerSpec(hostInput({ podNamespaces: { network: "/proc/42/ns/net" } })), invalid(/uts namespace has no path/));
    });
  });

  describe("cgroups and resources", () => {
    const resources = {
      cpuShares: 512,
      cpuQuota: 50000,
      cpuPeriod: 100000,
      memoryLimitBytes: 64 << 20,
      memorySwapLimitBytes: 128 << 20,
      cpusetCpus: "0-1",
      cpusetMems: "0",
      oomScoreAdj: -997,
      hugepageLimits: [{ pageSize: "2MB", limit: 0 }],
    };
    it("in a pod VM: the guest's own cgroup path, no cpusets, any oom_score_adj", async () => {
      const spec = await buildContainerSpec(input({ container: container({ resources }) }));
      assert.equal(spec.linux?.cgroupsPath, `/vmpod/${CONTAINER_ID}`);
      assert.deepEqual(spec.linux?.resources, {
        devices: [{ allow: false, access: "rwm" }],
        cpu: { shares: 512, quota: 50000, period: 100000 },
        memory: { limit: 64 << 20, swap: 128 << 20 },
      });
      assert.equal(spec.process?.oomScoreAdj, -997);
    });
    it("on the host: under the pod's cgroup parent, cpusets and hugepages kept, oom_score_adj raised to 0", async () => {
      const spec = await buildContainerSpec(hostInput({ container: container({ resources }) }));
      assert.equal(spec.linux?.cgroupsPath, `/kubepods/besteffort/poduid-1/${CONTAINER_ID}`);
      assert.deepEqual(spec.linux?.resources?.cpu, { shares: 512, quota: 50000, period: 100000, cpus: "0-1", mems: "0" });
      assert.deepEqual(spec.linux?.resources?.hugepageLimits, [{ pageSize: "2MB", limit: 0 }]);
      assert.equal(spec.process?.oomScoreAdj, 0);
      const positive = await buildContainerSpec(hostInput({ container: container({ resources: { oomScoreAdj: 1000 } }) }));
      assert.equal(positive.process?.oomScoreAdj, 1000);
    });
    it("on the host without a cgroup parent: under /vmpod/<pod>", async () => {
      const spec = await buildContainerSpec(hostInput({ pod: pod({ cgroupParent: "" }) }));
      assert.equal(spec.linux?.cgroupsPath, `/vmpod/${POD_ID}/${CONTAINER_ID}`);
    });
    it("refuses a systemd cgroup parent, hugepages or unified settings in a pod VM, an oom_score_adj out of range", async () => {
      await assert.rejects(buildContainerSpec(hostInput({ pod: pod({ cgroupParent: "kubepods-besteffort.slice" }) })), invalid(/cgroupfs/));
      await assert.rejects(buildContainerSpec(input({ container: container({ resources: { hugepageLimits: [{ pageSize: "2MB", limit: 4 << 20 }] } }) })), invalid(/hugepages \(2MB\)/));
      await assert.rejects(buildContainerSpec(input({ container: container({ resources: { unified: { "memory.high": "1M" } } }) })), invalid(/memory.high/));
      await assert.rejects(buildContainerSpec(input({ container: container({ resources: { oomScoreAdj: 1001 } }) })), invalid(/oom_score_adj/));
    });
    it("keeps unified settings on the host", async () => {
      const spec = await buildContainerSpec(hostInput({ container: container({ resources: { unified: { "memory.high": "1M" } } }) }));
      assert.deepEqual(spec.linux?.resources?.unified, { "memory.high": "1M" });
    });
  });

  describe("sysctls", () => {
    const sysctls = { "net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "net/ipv4/conf/eth0.100/forwarding": "1", "fs.mqueue.msg_max": "20" };
    it("on the host: the pod's namespaced sysctls, the slash form converted", async () => {
      const spec = await buildContainerSpec(hostInput({ pod: pod({ sysctls }) }));
      assert.deepEqual(spec.linux?.sysctl, {
        "net.ipv4.ip_forward": "1",
        "kernel.shm_rmid_forced": "1",
        "net.ipv4.conf.eth0/100.forwarding": "1",
        "fs.mqueue.msg_max": "20",
      });
    });
    it("in a pod VM: the same, set in the guest's namespaces the pod's containers share", async () => {
      const spec = await buildContainerSpec(input({ pod: pod({ sysctls }) }));
      assert.equal(spec.linux?.sysctl?.["kernel.shm_rmid_forced"], "1");
      assert.equal(spec.linux?.sysctl?.["net.ipv4.conf.eth0/100.forwarding"], "1");
      await assert.rejects(buildContainerSpec(input({ pod: pod({ sysctls: { "vm.swappiness": "1" } }) })), invalid(/vm.swappiness is not namespaced/));
    });
    it("refuses non-namespaced ones, and ones in a namespace shared with the node", async () => {
      await assert.rejects(buildContainerSpec(hostInput({ pod: pod({ sysctls: { "kernel.panic": "1" } }) })), invalid(/not namespaced/));
      const hostNet = pod({ sysctls: { "net.core.somaxconn": "1024" }, namespaces: { network: "NODE", pid: "CONTAINER", ipc: "POD" } });
      await assert.rejects(buildContainerSpec(hostInput({ pod: hostNet })), invalid(/node's network namespace/));
      const hostIpc = pod({ sysctls: { "kernel.msgmax": "1" }, namespaces: { network: "POD", pid: "CONTAINER", ipc: "NODE" } });
      await assert.rejects(buildContainerSpec(hostInput({ pod: hostIpc })), invalid(/node's IPC namespace/));
    });
  });

  describe("devices", () => {
    const devices = [{ containerPath: "/dev/fuse", hostPath: "/dev/fuse", permissions: "rw" }];
    it("are refused in a pod VM", async () => {
      await assert.rejects(buildContainerSpec(input({ container: container({ devices }) })), invalid(/\/dev\/fuse/));
    });
    it("on the host: nodes and cgroup rules from the resolved devices", async () => {
      const spec = await buildContainerSpec(
        hostInput({ container: container({ devices }), devices: [{ device: { path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }, permissions: "rw" }] }),
      );
      assert.deepEqual(spec.linux?.devices, [{ path: "/dev/fuse", type: "c", major: 10, minor: 229, fileMode: 0o666, uid: 0, gid: 0 }]);
      assert.deepEqual(spec.linux?.resources?.devices, [
        { allow: false, access: "rwm" },
        { allow: true, type: "c", major: 10, minor: 229, access: "rw" },
      ]);
    });
    it("on the host: refused unless resolved", async () => {
      await assert.rejects(buildContainerSpec(hostInput({ container: container({ devices }) })), invalid(/not resolved/));
    });
  });

  it("a pod VM's spec reaches the guest agent whole through the agent protocol", async () => {
    const spec = await buildContainerSpec(
      input({
        pod: pod({ seccomp: { type: "runtime-default" } }),
        container: container({ tty: true, resources: { cpuShares: 256, memoryLimitBytes: 1 << 26, oomScoreAdj: -10 } }, { runAsUser: 7, readonlyRootfs: true, noNewPrivs: true }),
        mounts: [{ containerPath: "/data", source: "/run/vmpod/shared/d", readonly: true, propagation: "private" }],
      }),
    );
    const wire = fromBinary(SpecSchema, toBinary(SpecSchema, create(SpecSchema, specToProto(spec))));
    const guest = JSON.parse(JSON.stringify(specToOci(wire), (_k, v: unknown) => (typeof v === "bigint" ? Number(v) : v))) as Record<string, unknown>;
    const expected = JSON.parse(JSON.stringify(spec)) as Record<string, unknown>;
    assert.deepEqual(guest["process"], expected["process"]);
    assert.deepEqual(guest["mounts"], expected["mounts"]);
    assert.deepEqual(guest["annotations"], expected["annotations"]);
    assert.deepEqual(guest["root"], expected["root"]);
    const linux = guest["linux"] as Record<string, unknown>;
    for (const key of ["namespaces", "cgroupsPath", "maskedPaths", "readonlyPaths", "seccomp"]) {
      assert.deepEqual(linux[key], (expected["linux"] as Record<string, unknown>)[key], key);
    }
    // The protocol's wildcard device rule comes back with its type spelled out.
    assert.deepEqual(linux["resources"], { devices: [{ allow: false, type: "a", access: "rwm" }], cpu: { shares: 256 }, memory: { limit: 1 << 26 } });
  });
});
