/**
 * The families read at scrape time: pods and containers by state from a
 * fake runtime's lists, each ready VM pod's QEMU usage (from a fake /proc
 * and from this process's real one), and the parsing of /proc's files.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { parseCpuSeconds, parseRssBytes, readProcessUsage } from "../../../src/metrics/proc-usage.js";
import { RuntimeCollector, type RuntimeLists } from "../../../src/metrics/runtime-collector.js";
import type { PodFilter } from "../../../src/sandbox/runtime.js";
import type { ContainerState, ContainerStatus, PodState, PodStatus } from "../../../src/sandbox/types.js";
import { families, parseExposition, valueOf } from "./samples.js";

function pod(id: string, state: PodState, handler: string, info: Record<string, unknown> = {}): PodStatus {
  return {
    id,
    handler,
    state,
    createdAt: 1n,
    additionalIps: [],
    info,
    config: {
      metadata: { name: `name-${id}`, namespace: "ns", uid: `uid-${id}`, attempt: 0 },
      hostname: id,
      logDirectory: "/var/log/pods/x",
      portMappings: [],
      labels: {},
      annotations: {},
      cgroupParent: "",
      namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" },
      sysctls: {},
      privileged: false,
      supplementalGroups: [],
      readonlyRootfs: false,
    },
  };
}

function container(id: string, podId: string, state: ContainerState): ContainerStatus {
  return {
    id,
    podId,
    state,
    config: {} as ContainerStatus["config"],
    imageId: "",
    imageRef: "",
    createdAt: 1n,
    startedAt: 0n,
    finishedAt: 0n,
    exitCode: 0,
    reason: "",
    message: "",
    logPath: "",
    info: {},
  };
}

class FakeLists implements RuntimeLists {
  readonly handlers = ["vmpod", "runc"];
  pods: PodStatus[] = [];
  containers: ContainerStatus[] = [];
  listPods(filter?: PodFilter): PodStatus[] {
    return this.pods.filter((p) => filter?.state === undefined || p.state === filter.state);
  }
  listContainers(): ContainerStatus[] {
    return this.containers;
  }
}

describe("metrics: families read from the runtime", () => {
  let registry: Registry;
  let lists: FakeLists;
  let collector: RuntimeCollector;
  const asked: number[] = [];
  const usage = new Map<number, { rssBytes: number; cpuSeconds: number }>();

  beforeEach(() => {
    registry = new Registry();
    lists = new FakeLists();
    asked.length = 0;
    usage.clear();
    collector = new RuntimeCollector(registry, {
      usage: async (pid) => {
        asked.push(pid);
        return usage.get(pid);
      },
    });
  });

  const samples = async () => parseExposition(await registry.metrics());

  it("has no pod samples before it watches a runtime", async () => {
    const s = await samples();
    assert.equal(s.filter((x) => x.name === "vmpod_pods" || x.name === "vmpod_containers").length, 0);
    assert.deepEqual(asked, []);
  });

  it("counts pods by state and handler, containers by state, every state shown", async () => {
    collector.watch(lists);
    lists.pods = [pod("a", "ready", "vmpod"), pod("b", "ready", "vmpod"), pod("c", "notready", "vmpod"), pod("d", "ready", "runc")];
    lists.containers = [container("c1", "a", "running"), container("c2", "a", "running"), container("c3", "b", "exited"), container("c4", "d", "created")];
    let s = await samples();
    assert.equal(valueOf(s, "vmpod_pods", { state: "ready", handler: "vmpod" }), 2);
    assert.equal(valueOf(s, "vmpod_pods", { state: "notready", handler: "vmpod" }), 1);
    assert.equal(valueOf(s, "vmpod_pods", { state: "ready", handler: "runc" }), 1);
    assert.equal(valueOf(s, "vmpod_pods", { state: "notready", handler: "runc" }), 0);
    assert.equal(valueOf(s, "vmpod_containers", { state: "running" }), 2);
    assert.equal(valueOf(s, "vmpod_containers", { state: "exited" }), 1);
    assert.equal(valueOf(s, "vmpod_containers", { state: "created" }), 1);
    assert.equal(valueOf(s, "vmpod_containers", { state: "unknown" }), 0);
    // Read anew at each scrape: what went is gone.
    lists.pods = [pod("a", "notready", "vmpod")];
    lists.containers = [];
    s = await samples();
    assert.equal(valueOf(s, "vmpod_pods", { state: "ready", handler: "vmpod" }), 0);
    assert.equal(valueOf(s, "vmpod_pods", { state: "notready", handler: "vmpod" }), 1);
    assert.equal(valueOf(s, "vmpod_containers", { state: "running" }), 0);
  });

  it("reports each ready VM pod's QEMU memory and CPU time, by pod id, namespace and name", async () => {
    collector.watch(lists);
    usage.set(101, { rssBytes: 150 << 20, cpuSeconds: 12.5 });
    usage.set(102, { rssBytes: 90 << 20, cpuSeconds: 3 });
    lists.pods = [
      pod("a", "ready", "vmpod", { qemuPid: 101 }),
      pod("b", "ready", "vmpod", { qemuPid: 102 }),
      // Its VM may be gone and its pid someone else's: not read.
      pod("c", "notready", "vmpod", { qemuPid: 103 }),
      // No VM: a runc pod; and a VM whose QEMU exited just now.
      pod("d", "ready", "runc", { pid: 55 }),
      pod("e", "ready", "vmpod", { qemuPid: 104 }),
      pod("f", "ready", "vmpod", { qemuPid: "105" }),
    ];
    const s = await samples();
    assert.equal(valueOf(s, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: "a", namespace: "ns", pod: "name-a" }), 150 << 20);
    assert.equal(valueOf(s, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: "b" }), 90 << 20);
    assert.equal(valueOf(s, "vmpod_pod_qemu_cpu_seconds_total", { pod_id: "a" }), 12.5);
    assert.equal(valueOf(s, "vmpod_pod_qemu_cpu_seconds_total", { pod_id: "b" }), 3);
    for (const id of ["c", "d", "e", "f"]) assert.equal(valueOf(s, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: id }), undefined);
    assert.deepEqual([...new Set(asked)].sort(), [101, 102, 104]);
    const f = families(await registry.metrics());
    assert.equal(f.get("vmpod_pod_qemu_cpu_seconds_total")?.type, "counter");
    assert.equal(f.get("vmpod_pod_qemu_resident_memory_bytes")?.type, "gauge");
    // A pod gone since the last scrape leaves no sample behind.
    lists.pods = [pod("b", "ready", "vmpod", { qemuPid: 102 })];
    const after = await samples();
    assert.equal(valueOf(after, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: "a" }), undefined);
    assert.equal(valueOf(after, "vmpod_pod_qemu_resident_memory_bytes", { pod_id: "b" }), 90 << 20);
  });
});

describe("metrics: a process's usage from /proc", () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-proc-unit-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const STATUS = "Name:\tqemu-system-x86\nState:\tS (sleeping)\nVmPeak:\t 2500000 kB\nVmRSS:\t  163840 kB\nRssAnon:\t  150000 kB\n";
  // A command name with spaces and parentheses; utime 1234, stime 266 ticks.
  const STAT = "4242 (qemu (pod) x) S 1 4242 4242 0 -1 4194560 5000 0 0 0 1234 266 0 0 20 0 5 0 987654 2600000000 40960 18446744073709551615";

  it("parses VmRSS and utime + stime", () => {
    assert.equal(parseRssBytes(STATUS), 163840 * 1024);
    assert.equal(parseRssBytes("Name:\tkthreadd\nState:\tS\n"), undefined);
    assert.equal(parseCpuSeconds(STAT), 15);
    assert.equal(parseCpuSeconds("4242 (short) S 1 2"), undefined);
    assert.equal(parseCpuSeconds("garbage"), undefined);
  });

  it("reads a process's files under a /proc of the test's own, undefined once it is gone", async () => {
    await mkdir(join(root, "4242"));
    await writeFile(join(root, "4242", "status"), STATUS);
    await writeFile(join(root, "4242", "stat"), STAT);
    assert.deepEqual(await readProcessUsage(4242, root), { rssBytes: 163840 * 1024, cpuSeconds: 15 });
    assert.equal(await readProcessUsage(4243, root), undefined);
  });

  it("reads this very process from the real /proc", async () => {
    const own = await readProcessUsage(process.pid);
    assert.ok(own, "this process has a /proc entry");
    // Within a factor of two of what Node itself says (the two reads are moments apart).
    const rss = process.memoryUsage.rss();
    assert.ok(own.rssBytes > rss / 2 && own.rssBytes < rss * 2, `VmRSS ${own.rssBytes}, Node says ${rss}`);
    const cpu = process.cpuUsage();
    const nodeCpu = (cpu.user + cpu.system) / 1e6;
    assert.ok(own.cpuSeconds > 0 && own.cpuSeconds <= nodeCpu + 0.5, `cpu ${own.cpuSeconds} s, Node says ${nodeCpu} s`);
  });
});
