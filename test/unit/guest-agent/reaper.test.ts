import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../../../src/common/log.js";
import { ErrnoError } from "../../../guest/agent/errno.js";
import { exitStatusOf, parseProcStat, Reaper } from "../../../guest/agent/reaper.js";

describe("guest agent: reaper", () => {
  it("decodes wait statuses: exit code, or 128 + the signal", () => {
    assert.equal(exitStatusOf(0), 0);
    assert.equal(exitStatusOf(3 << 8), 3);
    assert.equal(exitStatusOf(255 << 8), 255);
    assert.equal(exitStatusOf(9), 137);
    assert.equal(exitStatusOf(15), 143);
    assert.equal(exitStatusOf(6 | 0x80), 134, "a core dump keeps the signal");
  });

  it("reads state and parent from /proc/PID/stat, whatever the command name holds", () => {
    assert.deepEqual(parseProcStat("42 (sleep) Z 7 42 42 0 -1"), { state: "Z", ppid: 7 });
    assert.deepEqual(parseProcStat("42 (a) b (c) S 1 42"), { state: "S", ppid: 1 });
    assert.equal(parseProcStat(""), undefined);
  });

  describe("with a fake libc and /proc", () => {
    let proc: string;
    let exited: Map<number, number>;
    let waited: number[];
    let reaper: Reaper;
    let owned: Set<number>;

    beforeEach(async () => {
      proc = await mkdtemp(join(tmpdir(), "vmpod-proc-"));
      exited = new Map();
      waited = [];
      owned = new Set();
      const libc = {
        setChildSubreaper() {},
        waitpidNoHang(pid: number) {
          waited.push(pid);
          if (pid === 666) throw new ErrnoError("waitpid", 10);
          const status = exited.get(pid);
          if (status !== undefined) exited.delete(pid);
          return status;
        },
      };
      reaper = new Reaper(libc, silentLogger, (pid) => owned.has(pid), proc);
    });

    afterEach(async () => {
      reaper.stop();
      await rm(proc, { recursive: true, force: true });
    });

    async function fakeProcess(pid: number, state: string, ppid: number): Promise<void> {
      await mkdir(join(proc, String(pid)));
      await writeFile(join(proc, String(pid), "stat"), `${pid} (x y) ${state} ${ppid} 1 1 0`);
    }

    it("waits only for the pids it watches, when SIGCHLD comes, and never for -1", async () => {
      const status = reaper.watch(100);
      exited.set(100, 7 << 8);
      reaper.start();
      process.emit("SIGCHLD", "SIGCHLD");
      assert.equal(exitStatusOf(await status), 7);
      assert.ok(!waited.includes(-1));
    });

    it("collects a pid that exited before it was watched", async () => {
      exited.set(101, 0);
      assert.equal(await reaper.watch(101), 0);
    });

    it("gives up on a pid that is not its child (ECHILD) with status 255", async () => {
      assert.equal(exitStatusOf(await reaper.watch(666)), 255);
    });

    it("reaps zombie orphans it is the parent of, but not child_process's children, nor while a launch is under way", async () => {
      await fakeProcess(200, "Z", process.pid); // an orphan: reaped
      await fakeProcess(201, "Z", process.pid); // child_process's: left to libuv
      await fakeProcess(202, "S", process.pid); // alive
      await fakeProcess(203, "Z", 1); // someone else's
      owned.add(201);
      exited.set(200, 0).set(201, 0).set(202, 0).set(203, 0);
      const launched = reaper.beginLaunch();
      reaper.start();
      process.emit("SIGCHLD", "SIGCHLD");
      await new Promise((r) => setTimeout(r, 250));
      assert.deepEqual(waited, [], "no scan while a launch is under way");
      launched();
      await new Promise((r) => setTimeout(r, 250));
      assert.deepEqual(waited, [200]);
    });
  });
});
