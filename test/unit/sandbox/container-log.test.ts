/**
 * Container log files in the CRI format, written to temporary files: whole
 * and partial lines, long lines cut at the maximum, CR, empty lines and
 * binary bytes kept as they are, stdout and stderr never mixed within a
 * record, back-pressure, reopen after kubelet's rename, and timestamps as
 * Go's time.RFC3339Nano writes them.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { ContainerLog, formatRfc3339Nano, LineSplitter, type ContainerLogOptions } from "../../../src/sandbox/container-log.js";

const T0 = 1_700_000_000_123_456_789n;
const TS = "2023-11-14T22:13:20.123456789Z";

describe("container log", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-log-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  let calls = 0;
  const fixed: ContainerLogOptions = { now: () => T0, utcOffsetMinutes: () => 0 };

  async function logOf(chunks: (string | Buffer)[], options: ContainerLogOptions = fixed, stream: "stdout" | "stderr" = "stdout"): Promise<string> {
    const path = join(dir, `c${calls++}.log`);
    const log = await ContainerLog.open(path, options);
    await log.consume(stream, Readable.from(chunks.map((c) => (typeof c === "string" ? Buffer.from(c) : c))));
    await log.close();
    return readFile(path, "latin1");
  }

  describe("timestamps as Go's RFC3339Nano", () => {
    it("drops trailing zeros of the fraction, and the dot with a whole second", () => {
      assert.equal(formatRfc3339Nano(1_700_000_000_000_000_000n, 0), "2023-11-14T22:13:20Z");
      assert.equal(formatRfc3339Nano(1_700_000_000_100_000_000n, 0), "2023-11-14T22:13:20.1Z");
      assert.equal(formatRfc3339Nano(1_700_000_000_000_000_010n, 0), "2023-11-14T22:13:20.00000001Z");
      assert.equal(formatRfc3339Nano(T0, 0), TS);
    });
    it("writes the local offset, east positive, with the local wall time", () => {
      assert.equal(formatRfc3339Nano(1_700_000_000_500_000_000n, 120), "2023-11-15T00:13:20.5+02:00");
      assert.equal(formatRfc3339Nano(1_700_000_000_000_000_000n, -330), "2023-11-14T16:43:20-05:30");
      assert.equal(formatRfc3339Nano(0n, 0), "1970-01-01T00:00:00Z");
    });
    it("uses the wall clock by default", async () => {
      const before = Date.now();
      const text = await logOf(["x\n"], {});
      const stamp = text.split(" ")[0] ?? "";
      assert.match(stamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?(Z|[+-]\d\d:\d\d)$/);
      const at = Date.parse(stamp);
      assert.ok(at >= before - 5 && at <= Date.now() + 5, `${stamp} is not now`);
    });
  });

  describe("records", () => {
    it("writes each whole line as an F record", async () => {
      assert.equal(await logOf(["hello\nworld\n"]), `${TS} stdout F hello\n${TS} stdout F world\n`);
    });
    it("joins a line given in pieces", async () => {
      assert.equal(await logOf(["hel", "lo", " there\nnext", "\n"]), `${TS} stdout F hello there\n${TS} stdout F next\n`);
    });
    it("writes empty lines as empty F records", async () => {
      assert.equal(await logOf(["\n\na\n"], fixed, "stderr"), `${TS} stderr F \n${TS} stderr F \n${TS} stderr F a\n`);
    });
    it("keeps CR in the content", async () => {
      assert.equal(await logOf(["dos\r\nline\r", "\n"]), `${TS} stdout F dos\r\n${TS} stdout F line\r\n`);
    });
    it("keeps binary bytes as they are", async () => {
      const bytes = Buffer.from([0x00, 0xff, 0xfe, 0x1b, 0x5b, 0x0d, 0x0a, 0x80]);
      const text = await logOf([bytes]);
      assert.equal(text, `${TS} stdout F ${Buffer.from([0x00, 0xff, 0xfe, 0x1b, 0x5b, 0x0d]).toString("latin1")}\n${TS} stdout P \x80\n`);
    });
    it("writes output that ends without a newline as a P record at the end", async () => {
      assert.equal(await logOf(["done\nno newline"]), `${TS} stdout F done\n${TS} stdout P no newline\n`);
    });
    it("writes nothing for an empty stream", async () => {
      assert.equal(await logOf([]), "");
    });
  });

  describe("long lines", () => {
    const options = { ...fixed, maxLineBytes: 4 };
    it("keeps a line of exactly the maximum whole", async () => {
      assert.equal(await logOf(["abcd\n"], options), `${TS} stdout F abcd\n`);
    });
    it("cuts a longer line into P records of the maximum, its last piece F", async () => {
      assert.equal(await logOf(["abcdefghij\n"], options), `${TS} stdout P abcd\n${TS} stdout P efgh\n${TS} stdout F ij\n`);
      assert.equal(await logOf(["abcde", "fgh\n"], options), `${TS} stdout P abcd\n${TS} stdout F efgh\n`);
    });
    it("cuts an unterminated long line and ends it with P", async () => {
      assert.equal(await logOf(["abcdef"], options), `${TS} stdout P abcd\n${TS} stdout P ef\n`);
    });
    it("splits at 16 KiB by default", () => {
      const lines = new LineSplitter().push(Buffer.alloc(16 * 1024 * 2 + 1, 0x61));
      assert.deepEqual(
        lines.map((l) => [l.content.length, l.full]),
        [
          [16384, false],
          [16384, false],
        ],
      );
      assert.deepEqual(new LineSplitter().push(Buffer.from("a".repeat(16384) + "\n")).map((l) => [l.content.length, l.full]), [[16384, true]]);
    });
    it("holds no more than one unfinished line", () => {
      const s = new LineSplitter(8);
      for (let i = 0; i < 100; i++) s.push(Buffer.from("xxx"));
      const rest = s.end();
      assert.equal(rest.length, 1);
      assert.ok((rest[0]?.content.length ?? 99) <= 8);
    });
  });

  it("never mixes stdout and stderr within a record", async () => {
    const path = join(dir, "c.log");
    const log = await ContainerLog.open(path, fixed);
    const out = new PassThrough();
    const err = new PassThrough();
    const done = Promise.all([log.consume("stdout", out), log.consume("stderr", err)]);
    for (let i = 0; i < 200; i++) {
      out.write(`out-${i}-`);
      err.write(`err-${i}-`);
      await new Promise((r) => setImmediate(r));
      out.write(`${"o".repeat(i)}\n`);
      err.write(`${"e".repeat(i)}\n`);
    }
    out.end();
    err.end();
    await done;
    await log.close();
    const records = (await readFile(path, "utf8")).split("\n").filter((l) => l !== "");
    assert.equal(records.length, 400);
    for (const r of records) assert.match(r, /^\S+ (stdout F out-\d+-o*|stderr F err-\d+-e*)$/);
    const outs = records.filter((r) => r.includes(" stdout ")).map((r) => r.split(" ")[3]);
    assert.deepEqual(outs, Array.from({ length: 200 }, (_, i) => `out-${i}-${"o".repeat(i)}`));
  });

  it("reads no faster than it writes (back-pressure)", async () => {
    const path = join(dir, "c.log");
    const log = await ContainerLog.open(path, fixed);
    const behind: number[] = [];
    async function* source() {
      for (let i = 0; i < 50; i++) {
        // Asked for chunk i, the log must hold the records of every earlier chunk.
        const written = readFileSync(path, "utf8").split("\n").length - 1;
        behind.push(i - written);
        yield Buffer.from(`line ${i}\n`);
      }
    }
    await log.consume("stdout", source());
    await log.close();
    assert.deepEqual(behind, new Array(50).fill(0));
    assert.equal(readFileSync(path, "utf8").split("\n").length - 1, 50);
  });

  it("creates the file 0640 with its directory, and appends to an existing one", async () => {
    const path = join(dir, "pod", "ctr", "0.log");
    const a = await ContainerLog.open(path, fixed);
    await a.consume("stdout", Readable.from([Buffer.from("one\n")]));
    await a.close();
    assert.equal((await stat(path)).mode & 0o777, 0o640);
    const b = await ContainerLog.open(path, fixed);
    await b.consume("stdout", Readable.from([Buffer.from("two\n")]));
    await b.close();
    await b.close();
    assert.equal(await readFile(path, "utf8"), `${TS} stdout F one\n${TS} stdout F two\n`);
  });

  it("after kubelet renames the file, reopen sends later records to a new file and loses none", async () => {
    const path = join(dir, "c.log");
    const log = await ContainerLog.open(path, fixed);
    const out = new PassThrough();
    const consumed = log.consume("stdout", out);
    out.write("before\n");
    await new Promise((r) => setImmediate(r));
    await rename(path, `${path}.1`);
    out.write("between ");
    const reopened = log.reopen();
    out.write("rename\n");
    await reopened;
    out.write("after\n");
    out.end();
    await consumed;
    await log.close();
    const old = await readFile(`${path}.1`, "utf8");
    const now = await readFile(path, "utf8");
    assert.equal(old + now, `${TS} stdout F before\n${TS} stdout F between rename\n${TS} stdout F after\n`);
    assert.ok(now.endsWith(`${TS} stdout F after\n`));
    assert.ok(old.startsWith(`${TS} stdout F before\n`));
    assert.equal((await stat(path)).mode & 0o777, 0o640);
  });

  it("drops records after close and keeps reading", async () => {
    const path = join(dir, "c.log");
    const errors: unknown[] = [];
    const log = await ContainerLog.open(path, { ...fixed, onError: (e) => errors.push(e) });
    await log.close();
    await log.consume("stdout", Readable.from([Buffer.from("late\n")]));
    assert.equal(await readFile(path, "utf8"), "");
  });

  it("writes what it read before a source error, then reports the error", async () => {
    const path = join(dir, "c.log");
    const log = await ContainerLog.open(path, fixed);
    async function* failing() {
      yield Buffer.from("got this\nand th");
      throw new Error("connection lost");
    }
    await assert.rejects(log.consume("stderr", failing()), (err: Error & { kind?: string }) => err.kind === "Unavailable" && /connection lost/.test(err.message));
    await log.close();
    assert.equal(await readFile(path, "utf8"), `${TS} stderr F got this\n${TS} stderr P and th\n`);
  });
});
