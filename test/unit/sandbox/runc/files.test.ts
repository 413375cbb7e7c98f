/** What the runc handler reads from files: exit records, cgroup counters, and container output tailed as it grows. */
import assert from "node:assert/strict";
import { appendFile, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { parseStat } from "../../../../src/sandbox/runc/cgroups.js";
import { OutputTail } from "../../../../src/sandbox/runc/output-tail.js";
import { parseExit } from "../../../../src/sandbox/runc/supervisor.js";

describe("runc handler files", () => {
  it("parses exit records, damaged ones as status 255", () => {
    assert.deepEqual(parseExit("137 1\n"), { status: 137, oomKills: 1 });
    assert.deepEqual(parseExit("0"), { status: 0, oomKills: 0 });
    assert.deepEqual(parseExit("garbage"), { status: 255, oomKills: 0 });
  });

  it("parses cgroup stat files into bigints, skipping what is not a counter", () => {
    assert.deepEqual(parseStat("cache 4096\nrss 8192\nhierarchical_memory_limit 9223372036854771712\nbad line x\n"), {
      cache: 4096n,
      rss: 8192n,
      hierarchical_memory_limit: 9223372036854771712n,
    });
  });

  describe("output tail", () => {
    let dir: string;
    beforeEach(async () => (dir = await mkdtemp(join(tmpdir(), "vmpod-tail-"))));
    afterEach(async () => rm(dir, { recursive: true, force: true }));

    /** The next chunk, read as a consumer reads (paused mode: nothing is emitted to nobody). */
    const iterators = new WeakMap<Readable, AsyncIterator<Buffer>>();
    async function next(stream: Readable): Promise<string> {
      let it = iterators.get(stream);
      if (!it) {
        it = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
        iterators.set(stream, it);
      }
      let timer: NodeJS.Timeout | undefined;
      const result = await Promise.race([
        it.next(),
        new Promise<never>((_r, reject) => (timer = setTimeout(() => reject(new Error("no data within 3 s")), 3000))),
      ]).finally(() => clearTimeout(timer));
      return String(result.value);
    }

    it("follows a growing file, ends once finished, and the next reader resumes where it stopped", async () => {
      const path = join(dir, "stdout");
      await writeFile(path, "one\n");
      let finished = false;
      const tail = new OutputTail({ path, finished: async () => finished });
      assert.equal(await next(tail), "one\n");
      await appendFile(path, "two\n");
      assert.equal(await next(tail), "two\n");
      tail.destroy();
      await new Promise((r) => tail.once("close", r));
      assert.equal(await readFile(`${path}.offset`, "utf8"), "8");

      await appendFile(path, "three\n");
      finished = true;
      const again = new OutputTail({ path, finished: async () => finished });
      const chunks: string[] = [];
      for await (const c of again) chunks.push((c as Buffer).toString());
      assert.equal(chunks.join(""), "three\n");
    });

    it("frees what it has read from the disk, keeping the file's size", async () => {
      const path = join(dir, "stdout");
      const big = Buffer.alloc(3 << 20, 0x61);
      await writeFile(path, big);
      const before = (await stat(path)).blocks;
      const tail = new OutputTail({ path, finished: async () => true });
      let n = 0;
      for await (const c of tail) n += (c as Buffer).length;
      assert.equal(n, big.length);
      const after = await stat(path);
      assert.equal(after.size, big.length);
      assert.ok(after.blocks < before / 2, `blocks ${before} -> ${after.blocks}`);
    });

    it("frees nothing past the saved offset: a reader after a hard stop gets the output again, never zeros", async () => {
      const path = join(dir, "stdout");
      const big = Buffer.alloc(3 << 20, 0x61);
      await writeFile(path, big);
      // A daemon reads past a freeing step, then dies before it saves how far it read.
      const killed = new OutputTail({ path, finished: async () => false });
      let read = 0;
      while (read < (3 << 20) / 2) read += (await next(killed)).length;
      const next2 = new OutputTail({ path, finished: async () => true });
      const chunks: Buffer[] = [];
      for await (const c of next2) chunks.push(c as Buffer);
      killed.destroy();
      const again = Buffer.concat(chunks);
      assert.equal(again.length, big.length, "the next daemon starts where the offset was saved (nowhere yet)");
      const zero = again.indexOf(0);
      assert.equal(zero, -1, `a NUL byte at ${zero}: a hole was punched past the saved offset`);
    });
  });
});
