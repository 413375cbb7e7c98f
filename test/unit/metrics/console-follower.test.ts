/**
 * Debug mode's copy of guest consoles into the daemon's log: a console file
 * the test writes to as a guest would (lines in pieces, CRLF, the agent's
 * JSON lines, a character split between writes), the lines in the log
 * tagged with the pod, from the start for a booted VM and from the end
 * for one taken over, the last line read when the VM exits.
 */
import assert from "node:assert/strict";
import { appendFile, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "../../../src/common/log.js";
import { ConsoleFollower, LineSplitter } from "../../../src/metrics/console-follower.js";

interface Line {
  level: string;
  msg: string;
  pod?: string;
  component?: string;
  line?: string;
  guest?: Record<string, unknown>;
}

function fakeVm(id: string, consoleLog: string) {
  let exit = () => {};
  const exited = new Promise<void>((resolve) => (exit = resolve));
  return { vm: { id, consoleLog, exited }, exit };
}

async function until(what: string, probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe("metrics: guest consoles in the daemon log (debug mode)", () => {
  let dir: string;
  let lines: Line[];
  let follower: ConsoleFollower;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-console-unit-"));
    lines = [];
    const logger = createLogger({ level: "debug", sink: { write: (l) => lines.push(JSON.parse(l) as Line) }, fields: { component: "guest" } });
    follower = new ConsoleFollower(logger, { pollMs: 10 });
  });
  afterEach(async () => {
    await follower.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("copies a booted VM's console from its start, a line at a time, tagged with the pod, until the VM exits", async () => {
    const file = join(dir, "console.log");
    await writeFile(file, "vmpod: 0.91 root init\r\n");
    const { vm, exit } = fakeVm("pod-a", file);
    follower.booted(vm);
    assert.deepEqual(follower.following, ["pod-a"]);
    await until("the first line", () => lines.length === 1);
    await appendFile(file, '{"time":"t","level":"info","msg":"agent listening","component":"agent"}\nhalf a ');
    await until("the agent's line", () => lines.length === 2);
    // A character split between two writes, read in between.
    const snowman = Buffer.from("\u2603");
    await appendFile(file, Buffer.concat([Buffer.from("line\n\nsnow: "), snowman.subarray(0, 1)]));
    await new Promise((r) => setTimeout(r, 50));
    await appendFile(file, Buffer.concat([snowman.subarray(1), Buffer.from("\n")]));
    await until("the rest", () => lines.length === 4);
    await appendFile(file, "vmpod: agent exited with status 1");
    exit();
    await until("the follow to end", () => follower.following.length === 0);
    assert.deepEqual(
      lines.map((l) => [l.level, l.msg, l.pod, l.component, l.line ?? l.guest?.msg]),
      [
        ["debug", "guest console", "pod-a", "guest", "vmpod: 0.91 root init"],
        ["debug", "guest log", "pod-a", "guest", "agent listening"],
        ["debug", "guest console", "pod-a", "guest", "half a line"],
        ["debug", "guest console", "pod-a", "guest", "snow: \u2603"],
        ["debug", "guest console", "pod-a", "guest", "vmpod: agent exited with status 1"],
      ],
    );
    // The agent's own fields stay its own, under `guest`.
    assert.equal(lines[1]?.guest?.level, "info");
    assert.equal(lines[1]?.guest?.component, "agent");
  });

  it("follows a VM taken over after a restart from the console's end", async () => {
    const file = join(dir, "console.log");
    await writeFile(file, "copied by the vmpod before\n");
    const { vm, exit } = fakeVm("pod-b", file);
    follower.reattached(vm);
    follower.reattached(vm);
    await new Promise((r) => setTimeout(r, 50));
    await appendFile(file, "after the restart\n");
    await until("the new line", () => lines.length === 1);
    exit();
    await until("the follow to end", () => follower.following.length === 0);
    assert.deepEqual(lines.map((l) => l.line), ["after the restart"]);
  });

  it("stops every follow on close, after reading what was written; a console already gone is no error", async () => {
    const file = join(dir, "console.log");
    await writeFile(file, "");
    follower.booted(fakeVm("pod-c", file).vm);
    follower.booted(fakeVm("pod-d", join(dir, "missing.log")).vm);
    await appendFile(file, "written before close\n");
    await follower.close();
    assert.deepEqual(follower.following, []);
    assert.deepEqual(lines.map((l) => [l.pod, l.line]), [["pod-c", "written before close"]]);
    follower.booted(fakeVm("pod-e", file).vm);
    assert.deepEqual(follower.following, [], "nothing is followed after close");
  });

  it("tracks the VMs while debug mode is off, and follows them from their console's end once it is turned on", async () => {
    await follower.close();
    const logger = createLogger({ level: "debug", sink: { write: (l) => lines.push(JSON.parse(l) as Line) } });
    follower = new ConsoleFollower(logger, { enabled: false, pollMs: 10 });
    const file = join(dir, "console.log");
    await writeFile(file, "before debug mode\n");
    const { vm, exit } = fakeVm("pod-f", file);
    follower.booted(vm);
    const gone = fakeVm("pod-g", join(dir, "other.log"));
    follower.booted(gone.vm);
    gone.exit();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(follower.following, []);
    follower.setEnabled(true);
    assert.deepEqual(follower.following, ["pod-f"], "a VM that exited is not followed");
    await new Promise((r) => setTimeout(r, 50));
    await appendFile(file, "in debug mode\n");
    await until("the line", () => lines.length === 1);
    follower.setEnabled(false);
    follower.setEnabled(true);
    await new Promise((r) => setTimeout(r, 50));
    await appendFile(file, "debug mode again\n");
    await until("the second line", () => lines.length === 2);
    follower.setEnabled(false);
    await until("the follow to end", () => follower.following.length === 0);
    await appendFile(file, "after debug mode\n");
    await new Promise((r) => setTimeout(r, 50));
    exit();
    assert.deepEqual(lines.map((l) => [l.pod, l.line]), [["pod-f", "in debug mode"], ["pod-f", "debug mode again"]]);
  });

  it("keeps a character split between pieces whole, and cuts a line with no end into pieces rather than holding it", () => {
    const got: string[] = [];
    const splitter = new LineSplitter((l) => got.push(l));
    const snowman = Buffer.from("\u2603");
    splitter.push(snowman.subarray(0, 2));
    splitter.push(Buffer.concat([snowman.subarray(2), Buffer.from("\r\n")]));
    assert.deepEqual(got, ["\u2603"]);
    got.length = 0;
    splitter.push(Buffer.from("x".repeat(40_000)));
    assert.deepEqual(got.map((l) => l.length), [16_384, 16_384]);
    splitter.end();
    assert.deepEqual(got.map((l) => l.length), [16_384, 16_384, 40_000 - 2 * 16_384]);
  });
});
