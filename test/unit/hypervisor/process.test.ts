import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { describeExit, SupervisedProcess } from "../../../src/hypervisor/process.js";
import { readTail, TailBuffer } from "../../../src/hypervisor/tail.js";

const sh = (script: string, stderrLimit?: number) =>
  SupervisedProcess.spawn({ name: "sh", path: "/bin/sh", args: ["-c", script], ...(stderrLimit === undefined ? {} : { stderrLimit }) });

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("supervised process", () => {
  let dir: string;
  const started: SupervisedProcess[] = [];

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-proc-"));
  });

  afterEach(async () => {
    for (const p of started.splice(0)) p.signal("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  });

  it("names a missing or non-executable binary in a FailedPrecondition", async () => {
    await assert.rejects(
      SupervisedProcess.spawn({ name: "QEMU", path: join(dir, "qemu-missing"), args: [] }),
      (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && err.message === `QEMU binary not found: ${dir}/qemu-missing`,
    );
    const plain = join(dir, "not-executable");
    await writeFile(plain, "#!/bin/sh\n", { mode: 0o644 });
    await assert.rejects(
      SupervisedProcess.spawn({ name: "QEMU", path: plain, args: [] }),
      (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && err.message.includes(plain),
    );
  });

  it("reports the exit code and keeps the end of stderr", async () => {
    const p = await sh("echo first >&2; echo 'qemu: could not open kernel file' >&2; exit 3");
    started.push(p);
    assert.deepEqual(await p.wait(), { code: 3, signal: null });
    assert.equal(p.stderr(), "first\nqemu: could not open kernel file");
    assert.equal(describeExit({ code: 3, signal: null }), "exited with code 3");
  });

  it("bounds the stderr it keeps", async () => {
    const p = await sh("i=0; while [ $i -lt 200 ]; do echo line-$i >&2; i=$((i+1)); done", 100);
    started.push(p);
    await p.wait();
    const text = p.stderr();
    assert.ok(text.startsWith("..."), text);
    assert.ok(text.endsWith("line-199"), text);
    assert.ok(text.length <= 103, text);
  });

  it("stops with SIGTERM, and every later stop shares the outcome", async () => {
    const p = await sh("exec sleep 60");
    started.push(p);
    const first = p.stop(5000);
    const second = p.stop(1);
    assert.equal(first, second);
    assert.deepEqual(await first, { code: null, signal: "SIGTERM" });
    assert.equal(describeExit(await p.wait()), "was killed by SIGTERM");
  });

  it("kills a process that ignores SIGTERM once the timeout passes", async () => {
    const ready = join(dir, "ready");
    const p = await sh(`trap '' TERM; touch ${ready}; while :; do sleep 0.05; done`);
    started.push(p);
    while (!(await readFile(ready).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(await p.stop(200), { code: null, signal: "SIGKILL" });
  });

  it("uses the graceful request first, and SIGTERM when it fails", async () => {
    const p = await sh("exec sleep 60");
    started.push(p);
    let asked = 0;
    const status = await p.stop(5000, async () => {
      asked++;
      throw new Error("qmp is gone");
    });
    assert.equal(asked, 1);
    assert.equal(status.signal, "SIGTERM");
  });

  it("reaches the children the process forked", async () => {
    const pidFile = join(dir, "child.pid");
    const p = await sh(`sleep 60 & echo $! > ${pidFile}; wait`);
    started.push(p);
    let child = "";
    while (child === "") child = (await readFile(pidFile, "utf8").catch(() => "")).trim();
    assert.ok(alive(Number(child)));
    await p.stop(5000);
    for (let i = 0; i < 100 && alive(Number(child)); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(!alive(Number(child)), "the forked child is gone");
  });
});

describe("tails", () => {
  it("keeps the last bytes across chunk boundaries", () => {
    const tail = new TailBuffer(5);
    tail.push(Buffer.from("abc"));
    assert.equal(tail.text(), "abc");
    tail.push(Buffer.from("defg"));
    assert.equal(tail.text(), "...cdefg");
  });

  it("reads the end of a file, and nothing from a missing one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "vmpod-tail-"));
    try {
      await writeFile(join(dir, "log"), "0123456789");
      assert.equal(await readTail(join(dir, "log"), 4), "...6789");
      assert.equal(await readTail(join(dir, "log"), 40), "0123456789");
      assert.equal(await readTail(join(dir, "missing"), 4), "");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
