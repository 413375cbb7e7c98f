/**
 * The unpacker's decisions that need no root: refusals before anything is
 * written, the diff id of an empty layer, decompression failures, canceling,
 * and the zstd child's life. The rest runs as root in
 * test/integration/image/unpack.test.ts.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { gzipSync } from "node:zlib";
import { VmpodError, type ErrorKind } from "../../../../src/common/errors.js";
import { silentLogger } from "../../../../src/common/log.js";
import { ZstdDecompressor } from "../../../../src/image/unpack/decompress.js";
import { TarLayerUnpacker } from "../../../../src/image/unpack/index.js";
import type { Compression } from "../../../../src/image/types.js";
import { makeTar, type WriterEntry } from "../../../helpers/tar-writer.js";

const unpacker = new TarLayerUnpacker({ logger: silentLogger });

async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, pattern: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VmpodError, `not a VmpodError: ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

describe("layer unpacker (no root)", () => {
  let root: string;
  let target: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-unpack-unit-"));
    target = join(root, "layer");
    await mkdir(target);
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const compression of ["none", "gzip", "zstd"] as const) {
    it(`gives the diff id and size of the uncompressed tar, padding included (${compression})`, async () => {
      const tar = Buffer.concat([makeTar([]), Buffer.alloc(9216)]); // a 10 KiB record, as tar pads it
      const data = compression === "gzip" ? gzipSync(tar) : compression === "zstd" ? execFileSync("zstd", ["-c", "-q"], { input: tar }) : tar;
      const result = await unpacker.unpack(Readable.from([data]), compression, target);
      assert.deepEqual(result, { diffId: `sha256:${createHash("sha256").update(tar).digest("hex")}`, uncompressedSize: 10240, entries: 0 });
    });
  }

  const refusals: [string, WriterEntry[], RegExp][] = [
    ["an escaping name", [{ name: "../evil", body: "x" }], /unpack layer: entry "\.\.\/evil": name contains "\.\."/],
    ["a hardlink to a file outside", [{ name: "pw", type: "hardlink", linkname: "/etc/passwd" }], /entry "pw": hardlink target "\/etc\/passwd" is not a file written earlier by this layer/],
    ["a hardlink escaping", [{ name: "pw", type: "hardlink", linkname: "../x" }], /hardlink target "\.\.\/x".*"\.\."/],
    ["an unknown entry type", [{ name: "v", typeflag: "V" }], /entry "v" has unknown type "V"/],
    ["an owner out of range", [{ name: "f", uid: 2 ** 32, body: "" }], /entry "f": owner 4294967296:0 is out of range/],
    ["a whiteout naming nothing", [{ name: ".wh.", body: "" }], /whiteout names no entry/],
  ];
  for (const [what, entries, pattern] of refusals) {
    it(`refuses ${what}, writing nothing`, async () => {
      await rejectsWith(unpacker.unpack(Readable.from([makeTar(entries)]), "none", target), "InvalidArgument", pattern);
      assert.deepEqual(await readdir(target), []);
    });
  }

  it("refuses an unknown compression", async () => {
    const source = Readable.from([makeTar([])]);
    await rejectsWith(unpacker.unpack(source, "lz4" as Compression, target), "InvalidArgument", /unknown layer compression "lz4"/);
    assert.ok(source.destroyed);
  });

  it("refuses data that is not gzip as InvalidArgument", async () => {
    await rejectsWith(unpacker.unpack(Readable.from([makeTar([])]), "gzip", target), "InvalidArgument", /gzip stream is corrupt/);
  });

  it("refuses data that is not zstd, with zstd's own words", async () => {
    await rejectsWith(unpacker.unpack(Readable.from([makeTar([])]), "zstd", target), "InvalidArgument", /zstd stream is corrupt: zstd -dc failed \(exit 1\): .+/);
  });

  it("refuses a tar stream that is cut short", async () => {
    await rejectsWith(unpacker.unpack(Readable.from([gzipSync(Buffer.alloc(700))]), "gzip", target), "InvalidArgument", /truncated/);
  });

  it("is Canceled at once when the signal is already aborted, and destroys the source", async () => {
    const source = Readable.from([makeTar([])]);
    await rejectsWith(unpacker.unpack(source, "none", target, { signal: AbortSignal.abort() }), "Canceled", /canceled/);
    assert.ok(source.destroyed);
  });

  it("says what to install when zstd is missing", async () => {
    const missing = new TarLayerUnpacker({ logger: silentLogger, zstdCommand: join(root, "no-such-zstd") });
    await rejectsWith(missing.unpack(Readable.from([Buffer.alloc(10)]), "zstd", target), "FailedPrecondition", /not found: install the Debian package zstd/);
  });

  describe("zstd child", () => {
    it("is reaped after a successful run", async () => {
      const z = new ZstdDecompressor();
      const out: Buffer[] = [];
      await pipeline(Readable.from([execFileSync("zstd", ["-c", "-q"], { input: "hello" })]), z, async (chunks: AsyncIterable<Buffer>) => {
        for await (const c of chunks) out.push(c);
      });
      await z.exited;
      assert.equal(Buffer.concat(out).toString(), "hello");
      assert.throws(() => process.kill(z.pid ?? 0, 0), { code: "ESRCH" });
    });

    it("is killed and reaped when the stream is destroyed mid-way", async () => {
      const z = new ZstdDecompressor();
      z.write(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // a frame's magic, then nothing: zstd waits for more
      const pid = z.pid;
      assert.ok(pid !== undefined);
      assert.doesNotThrow(() => process.kill(pid, 0), "zstd runs, waiting for input");
      z.destroy();
      await z.exited;
      assert.throws(() => process.kill(pid, 0), { code: "ESRCH" }, "zstd is gone, reaped");
    });
  });
});
