import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { cgroupDir, parseKeyed, parseValue, readStats } from "../../../guest/agent/cgroups.js";
import { OomMonitor } from "../../../guest/agent/oom.js";

describe("guest agent: cgroup statistics and OOM events", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-cgroup-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("parses cgroup v2 files", () => {
    assert.deepEqual(parseKeyed("usage_usec 12\nuser_usec 7\n\nbad line x\n"), { usage_usec: 12n, user_usec: 7n });
    assert.equal(parseValue("max\n"), 0n);
    assert.equal(parseValue("1048576\n"), 1048576n);
    assert.equal(cgroupDir("/sys/fs/cgroup", "/vmpod/c1"), "/sys/fs/cgroup/vmpod/c1");
  });

  it("reads usage from a container's cgroup, in nanoseconds and bytes; missing files are zero", async () => {
    await writeFile(join(dir, "cpu.stat"), "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 4\nnr_throttled 1\nthrottled_usec 20\n");
    await writeFile(join(dir, "memory.current"), "4096\n");
    await writeFile(join(dir, "memory.max"), "max\n");
    await writeFile(join(dir, "memory.stat"), "anon 1024\nfile 2048\n");
    await writeFile(join(dir, "memory.events"), "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n");
    await writeFile(join(dir, "pids.current"), "2\n");
    const s = await readStats(dir);
    assert.deepEqual(s.cpu, { totalNs: 1_500_000n, userNs: 1_000_000n, systemNs: 500_000n, periods: 4n, throttledPeriods: 1n, throttledNs: 20_000n });
    assert.equal(s.memory.usage, 4096n);
    assert.equal(s.memory.limit, 0n, "max: no limit");
    assert.equal(s.memory.failcnt, 3n);
    assert.equal(s.memory.maxUsage, 0n, "no memory.peak here");
    assert.deepEqual(s.memory.stat, { anon: 1024n, file: 2048n });
    assert.deepEqual(s.pids, { current: 2n, limit: 0n });
  });

  it("reports a container whose oom_kill counter rises, queued until asked for", async () => {
    const oom = new OomMonitor(silentLogger);
    const events = join(dir, "memory.events");
    await writeFile(events, "oom 0\noom_kill 0\n");
    assert.equal(await oom.watch("c1", events), true);
    assert.equal(await oom.watch("no-memory-controller", join(dir, "missing")), false);
    const next = oom.next();
    await writeFile(events, "oom 1\noom_kill 1\n");
    assert.equal(await next, "c1");
    await writeFile(events, "oom 2\noom_kill 2\n");
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await oom.next(), "c1", "queued while nobody waited");
    const controller = new AbortController();
    const waiting = oom.next(controller.signal);
    controller.abort();
    await assert.rejects(waiting, (err: unknown) => err instanceof VmpodError && err.kind === "Canceled");
    oom.close();
  });
});
