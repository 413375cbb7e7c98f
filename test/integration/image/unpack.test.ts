/**
 * The layer unpacker for real, as root: every file type with its metadata,
 * the three compressions, whiteouts as overlayfs reads them (a real overlay
 * mount of two unpacked layers), and hostile layers refused with nothing
 * written outside the target directory.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, readlink, rm, lstat, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { gzipSync } from "node:zlib";
import { VmpodError, type ErrorKind } from "../../../src/common/errors.js";
import { createLogger, silentLogger } from "../../../src/common/log.js";
import { run } from "../../../src/common/exec.js";
import { mountPoints, unmount } from "../../../src/common/mount.js";
import { TarLayerUnpacker } from "../../../src/image/unpack/index.js";
import { lgetxattr, llistxattr } from "../../../src/image/unpack/syscalls.js";
import type { Compression } from "../../../src/image/types.js";
import { makeTar, type WriterEntry } from "../../helpers/tar-writer.js";

const unpacker = new TarLayerUnpacker({ logger: silentLogger });

function compress(tar: Buffer, compression: Compression): Buffer {
  if (compression === "gzip") return gzipSync(tar);
  if (compression === "zstd") return execFileSync("zstd", ["-c", "-q"], { input: tar, maxBuffer: 1 << 26 });
  return tar;
}

/** The source a registry download looks like: the bytes in modest chunks. */
function streamOf(data: Buffer, chunk = 3000): Readable {
  const chunks: Buffer[] = [];
  for (let i = 0; i < data.length; i += chunk) chunks.push(data.subarray(i, i + chunk));
  return Readable.from(chunks);
}

/** zstd processes that are children of this test process (running or zombie). */
async function zstdChildren(): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const status = await readFile(`/proc/${pid}/status`, "utf8");
      const ppid = /^PPid:\s+(\d+)$/m.exec(status)?.[1];
      const name = /^Name:\s+(.*)$/m.exec(status)?.[1];
      if (Number(ppid) === process.pid && name === "zstd") found.push(`${pid} ${/^State:\s+(.*)$/m.exec(status)?.[1] ?? ""}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, pattern?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VmpodError, `not a VmpodError: ${String(err)}`);
    assert.equal(err.kind, kind, err.message);
    if (pattern) assert.match(err.message, pattern);
    return true;
  });
}

/**
 * Every path under `dir` but `skip`, with what each is (type, mode, owner,
 * size, links, content or link target). Walked by hand: never into symlinks.
 */
async function snapshot(dir: string, skip: string, prefix = ""): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of await readdir(join(dir, prefix))) {
    const rel = prefix === "" ? name : `${prefix}/${name}`;
    if (rel === skip) continue;
    const p = join(dir, rel);
    const st = await lstat(p);
    const content = st.isFile() ? createHash("sha256").update(await readFile(p)).digest("hex") : st.isSymbolicLink() ? await readlink(p) : "";
    out.set(rel, `${st.mode} ${st.uid} ${st.gid} ${st.size} ${st.nlink} ${content}`);
    if (st.isDirectory()) for (const [k, v] of await snapshot(dir, skip, rel)) out.set(k, v);
  }
  return out;
}

describe("layer unpacker (root)", function () {
  this.timeout(60_000);
  let root: string;
  let target: string;

  before(function () {
    if (process.getuid?.() !== 0) {
      console.log("    (these tests need root: chown, mknod and trusted.* xattrs)");
      this.skip();
    }
  });

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-unpack-"));
    target = join(root, "layer");
    await mkdir(target);
  });

  afterEach(async () => {
    const mounted = (await mountPoints()).filter((p) => p.startsWith(root + "/"));
    for (const m of mounted) await unmount(m);
    await rm(root, { recursive: true, force: true });
    assert.deepEqual(mounted, [], "a test left a mount behind");
    assert.deepEqual(await zstdChildren(), [], "a zstd process outlived its unpack");
  });

  const normalLayer: WriterEntry[] = [
    { name: "./", type: "directory", mode: 0o755, mtime: 1_500_000_000 },
    { name: "./etc/", type: "directory", mode: 0o750, uid: 10, gid: 20, mtime: 1_600_000_000 },
    { name: "./etc/conf", body: "key=value\n", mode: 0o640, uid: 1000, gid: 1001, mtime: 1_650_000_000, pax: { "SCHILY.xattr.user.note": "hello" } },
    { name: "./bin/su", body: "#!/bin/sh\n", mode: 0o4755, uid: 0, gid: 0, mtime: 1_650_000_001 },
    { name: "./shared/", type: "directory", mode: 0o2775, gid: 50, mtime: 1_650_000_002 },
    { name: "./tmp/", type: "directory", mode: 0o1777, mtime: 1_650_000_003 },
    { name: "./etc/abs-link", type: "symlink", linkname: "/etc/conf", uid: 7, gid: 8, mtime: 1_650_000_004 },
    { name: "./etc/rel-link", type: "symlink", linkname: "../bin/su" },
    { name: "./etc/hard", type: "hardlink", linkname: "./etc/conf" },
    { name: "./dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666, mtime: 1_650_000_005 },
    { name: "./dev/loop0", type: "block", devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
    { name: "./run/fifo", type: "fifo", mode: 0o620, uid: 3 },
    { name: "./big", body: Buffer.alloc(300_000, 0x5a), mode: 0o600 },
  ];

  for (const compression of ["none", "gzip", "zstd"] as const) {
    it(`unpacks every file type with owners, modes, times and xattrs (${compression})`, async () => {
      const tar = makeTar(normalLayer);
      const result = await unpacker.unpack(streamOf(compress(tar, compression)), compression, target);
      assert.deepEqual(result, { diffId: `sha256:${createHash("sha256").update(tar).digest("hex")}`, uncompressedSize: tar.length, entries: normalLayer.length });

      const info = async (p: string) => {
        const st = await lstat(join(target, p));
        return { mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, mtime: st.mtimeMs / 1000 };
      };
      assert.deepEqual(await info("."), { mode: 0o755, uid: 0, gid: 0, mtime: 1_500_000_000 });
      assert.deepEqual(await info("etc"), { mode: 0o750, uid: 10, gid: 20, mtime: 1_600_000_000 }, "a directory keeps its time after children arrive");
      assert.deepEqual(await info("etc/conf"), { mode: 0o640, uid: 1000, gid: 1001, mtime: 1_650_000_000 });
      assert.equal(await readFile(join(target, "etc/conf"), "utf8"), "key=value\n");
      assert.deepEqual(lgetxattr(join(target, "etc/conf"), "user.note"), Buffer.from("hello"));
      assert.equal((await info("bin/su")).mode, 0o4755);
      assert.deepEqual(await info("bin"), { ...(await info("bin")), mode: 0o755, uid: 0, gid: 0 }, "a missing parent is made 0755 root:root");
      assert.equal((await info("shared")).mode, 0o2775);
      assert.equal((await info("tmp")).mode, 0o1777);
      assert.equal(await readlink(join(target, "etc/abs-link")), "/etc/conf");
      assert.deepEqual(await info("etc/abs-link"), { mode: 0o777, uid: 7, gid: 8, mtime: 1_650_000_004 });
      assert.equal(await readlink(join(target, "etc/rel-link")), "../bin/su");
      const [conf, hard] = await Promise.all([stat(join(target, "etc/conf")), stat(join(target, "etc/hard"))]);
      assert.equal(hard.ino, conf.ino);
      assert.equal(conf.nlink, 2);
      const nul = await lstat(join(target, "dev/null"));
      assert.ok(nul.isCharacterDevice());
      assert.equal(nul.rdev, (1 << 8) | 3);
      assert.deepEqual(await info("dev/null"), { mode: 0o666, uid: 0, gid: 0, mtime: 1_650_000_005 });
      const loop = await lstat(join(target, "dev/loop0"));
      assert.ok(loop.isBlockDevice());
      assert.deepEqual([loop.rdev, loop.mode & 0o7777, loop.gid], [7 << 8, 0o660, 6]);
      const fifo = await lstat(join(target, "run/fifo"));
      assert.ok(fifo.isFIFO());
      assert.deepEqual([fifo.mode & 0o7777, fifo.uid], [0o620, 3]);
      assert.deepEqual(await readFile(join(target, "big")), Buffer.alloc(300_000, 0x5a));
    });
  }

  it("writes whiteouts as 0/0 character devices and opaque directories as trusted.overlay.opaque=y", async () => {
    const tar = makeTar([
      { name: "a/", type: "directory" },
      { name: "a/.wh.gone", body: "" },
      { name: "a/replaced", body: "earlier in this layer" },
      { name: "a/.wh.replaced", body: "" },
      { name: "opq/", type: "directory", mode: 0o700 },
      { name: "opq/.wh..wh..opq", body: "" },
      { name: "opq/new", body: "n" },
      { name: "deep/er/.wh..wh..opq", body: "" },
      { name: ".wh..wh.plnk", body: "" },
      { name: ".wh..wh..plnk/1.2", body: "" },
    ]);
    const result = await unpacker.unpack(streamOf(tar), "none", target);
    assert.equal(result.entries, 10);
    for (const p of ["a/gone", "a/replaced"]) {
      const st = await lstat(join(target, p));
      assert.ok(st.isCharacterDevice(), p);
      assert.equal(st.rdev, 0, p);
    }
    assert.deepEqual(lgetxattr(join(target, "opq"), "trusted.overlay.opaque"), Buffer.from("y"));
    assert.equal((await lstat(join(target, "opq"))).mode & 0o7777, 0o700);
    assert.deepEqual(await readdir(join(target, "opq")), ["new"]);
    assert.deepEqual(lgetxattr(join(target, "deep/er"), "trusted.overlay.opaque"), Buffer.from("y"), "an opaque directory missing from the tar is made");
    assert.deepEqual((await readdir(target)).sort(), ["a", "deep", "opq"], "AUFS metadata leaves nothing");
  });

  it("unpacked layers work as overlayfs lower layers: whiteouts and opaque directories hide the layer below", async () => {
    const lowerDir = join(root, "lower");
    const upperDir = join(root, "upper");
    const mnt = join(root, "mnt");
    await Promise.all([mkdir(lowerDir), mkdir(upperDir), mkdir(mnt)]);
    const lower = makeTar([
      { name: "a/", type: "directory" },
      { name: "a/keep", body: "kept" },
      { name: "a/gone", body: "hidden" },
      { name: "a/gonedir/", type: "directory" },
      { name: "a/gonedir/inside", body: "hidden too" },
      { name: "opq/", type: "directory" },
      { name: "opq/lowerfile", body: "hidden by opaque" },
      { name: "plain", body: "from lower" },
    ]);
    const upper = makeTar([
      { name: "a/", type: "directory" },
      { name: "a/.wh.gone", body: "" },
      { name: "a/.wh.gonedir", body: "" },
      { name: "opq/", type: "directory" },
      { name: "opq/.wh..wh..opq", body: "" },
      { name: "opq/upperfile", body: "from upper" },
    ]);
    await unpacker.unpack(streamOf(gzipSync(lower)), "gzip", lowerDir);
    await unpacker.unpack(streamOf(compress(upper, "zstd")), "zstd", upperDir);
    await run("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${upperDir}:${lowerDir}`, mnt]);
    try {
      assert.deepEqual((await readdir(join(mnt, "a"))).sort(), ["keep"]);
      assert.equal(await readFile(join(mnt, "a/keep"), "utf8"), "kept");
      assert.deepEqual(await readdir(join(mnt, "opq")), ["upperfile"]);
      assert.equal(await readFile(join(mnt, "plain"), "utf8"), "from lower");
    } finally {
      await run("umount", [mnt]);
    }
  });

  it("drops trusted.overlay.* xattrs from the image (logged at debug), keeping the rest of the entry", async () => {
    const lines: string[] = [];
    const logging = new TarLayerUnpacker({ logger: createLogger({ level: "debug", sink: { write: (l) => lines.push(l) } }) });
    const tar = makeTar([
      { name: "d/", type: "directory", pax: { "SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.ok": "1" } },
      { name: "d/f", body: "f", pax: { "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere", "SCHILY.xattr.user.overlay.opaque": "y" } },
    ]);
    await logging.unpack(streamOf(tar), "none", target);
    assert.deepEqual(llistxattr(join(target, "d")), ["user.ok"]);
    assert.deepEqual(llistxattr(join(target, "d/f")), []);
    const dropped = lines.map((l) => JSON.parse(l) as { msg: string; xattr?: string; entry?: string }).filter((l) => l.xattr !== undefined);
    assert.deepEqual(
      dropped.map((l) => [l.entry, l.xattr]),
      [
        ["d/", "trusted.overlay.opaque"],
        ["d/f", "trusted.overlay.redirect"],
        ["d/f", "user.overlay.opaque"],
      ],
    );
  });

  it("a later entry replaces an earlier one; a directory over a directory only updates it", async () => {
    const tar = makeTar([
      { name: "x/", type: "directory", mode: 0o700 },
      { name: "x/child", body: "c" },
      { name: "x/", type: "directory", mode: 0o755, uid: 5 },
      { name: "f", body: "first" },
      { name: "f", body: "second" },
      { name: "l", type: "symlink", linkname: "/nowhere" },
      { name: "l", body: "now a file" },
      { name: "d/", type: "directory" },
      { name: "d/inner", body: "i" },
      { name: "d", type: "symlink", linkname: "x" },
    ]);
    await unpacker.unpack(streamOf(tar), "none", target);
    assert.equal(await readFile(join(target, "x/child"), "utf8"), "c");
    assert.deepEqual([(await lstat(join(target, "x"))).mode & 0o7777, (await lstat(join(target, "x"))).uid], [0o755, 5]);
    assert.equal(await readFile(join(target, "f"), "utf8"), "second");
    assert.equal(await readFile(join(target, "l"), "utf8"), "now a file");
    assert.equal(await readlink(join(target, "d")), "x");
  });

  describe("hostile layers: refused, nothing written outside the target", () => {
    const outsideAbs = () => join(root, "outside");

    const cases: { readonly name: string; readonly entries: () => WriterEntry[]; readonly message: RegExp }[] = [
      { name: "../evil", entries: () => [{ name: "../evil", body: "x" }], message: /"\.\.\/evil".*escape/ },
      { name: "a/../../evil", entries: () => [{ name: "a/", type: "directory" }, { name: "a/../../evil", body: "x" }], message: /"a\/\.\.\/\.\.\/evil"/ },
      { name: "/../evil", entries: () => [{ name: "/../evil", body: "x" }], message: /"\/\.\.\/evil"/ },
      { name: "a/../b (inside, still refused)", entries: () => [{ name: "a/../b", body: "x" }], message: /"\.\."/ },
      { name: "a NUL in a pax path", entries: () => [{ name: "x", pax: { path: "ok\0/../../evil" }, body: "x" }], message: /NUL/ },
      {
        name: "a symlink to an absolute outside directory, then an entry through it",
        entries: () => [{ name: "link", type: "symlink", linkname: outsideAbs() }, { name: "link/evil", body: "x" }],
        message: /"link\/evil" goes through symlink "link"/,
      },
      {
        name: "a symlink to ../.., then an entry through it",
        entries: () => [{ name: "link", type: "symlink", linkname: "../.." }, { name: "link/evil", body: "x" }],
        message: /goes through symlink "link"/,
      },
      {
        name: "a symlink, then a directory through it",
        entries: () => [{ name: "d", type: "symlink", linkname: outsideAbs() }, { name: "d/sub/", type: "directory" }],
        message: /"d\/sub\/" goes through symlink "d"/,
      },
      {
        name: "a symlink, then a whiteout through it",
        entries: () => [{ name: "d", type: "symlink", linkname: outsideAbs() }, { name: "d/.wh.sentinel", body: "" }],
        message: /goes through symlink "d"/,
      },
      {
        name: "a symlink, then an opaque marker through it",
        entries: () => [{ name: "d", type: "symlink", linkname: outsideAbs() }, { name: "d/.wh..wh..opq", body: "" }],
        message: /goes through symlink "d"/,
      },
      { name: "a hardlink to /etc/passwd", entries: () => [{ name: "pw", type: "hardlink", linkname: "/etc/passwd" }], message: /not a file written earlier by this layer/ },
      { name: "a hardlink to ../outside", entries: () => [{ name: "pw", type: "hardlink", linkname: "../outside/file" }], message: /hardlink target.*escape/ },
      {
        name: "a hardlink through a symlink",
        entries: () => [
          { name: "real/", type: "directory" },
          { name: "real/file", body: "x" },
          { name: "real", type: "symlink", linkname: outsideAbs() },
          { name: "h", type: "hardlink", linkname: "real/file" },
        ],
        message: /not a file written earlier by this layer/,
      },
      {
        name: "a hardlink through a symlinked parent of a file written earlier",
        entries: () => [
          { name: "dir/", type: "directory" },
          { name: "dir/file", body: "x" },
          { name: "alias", type: "symlink", linkname: "dir" },
          { name: "h", type: "hardlink", linkname: "alias/file" },
        ],
        message: /not a file written earlier by this layer/,
      },
      { name: "a hardlink to a directory", entries: () => [{ name: "d/", type: "directory" }, { name: "h", type: "hardlink", linkname: "d" }], message: /not a file written earlier/ },
      { name: "a hardlink to a missing target", entries: () => [{ name: "h", type: "hardlink", linkname: "missing" }], message: /not a file written earlier/ },
      { name: "a file over the root", entries: () => [{ name: "./", body: "x" }], message: /replace the layer's root/ },
      { name: "a whiteout of ..", entries: () => [{ name: "a/.wh...", body: "" }], message: /whiteout names no entry/ },
    ];

    for (const c of cases) {
      it(c.name, async () => {
        const outside = outsideAbs();
        await mkdir(outside);
        await writeFile(join(outside, "sentinel"), "untouched");
        await writeFile(join(outside, "file"), "outside file");
        const passwd = await stat("/etc/passwd");
        const before = await snapshot(root, "layer");
        await rejectsWith(unpacker.unpack(streamOf(makeTar(c.entries())), "none", target), "InvalidArgument", c.message);
        assert.deepEqual(await snapshot(root, "layer"), before, "something outside the target changed");
        const after = await stat("/etc/passwd");
        assert.deepEqual([after.nlink, after.mtimeMs, after.ino], [passwd.nlink, passwd.mtimeMs, passwd.ino]);
        for (const p of ["/evil", join(tmpdir(), "evil"), join(root, "evil")]) await assert.rejects(lstat(p), { code: "ENOENT" }, p);
      });
    }
  });

  it("refuses a corrupt gzip stream and a truncated one (an error, not a hang)", async () => {
    const gz = gzipSync(makeTar(normalLayer));
    const corrupt = Buffer.from(gz);
    for (let i = 40; i < 200; i++) corrupt[i] = (corrupt[i] ?? 0) ^ 0x55;
    await rejectsWith(unpacker.unpack(streamOf(corrupt), "gzip", join(await mkdtemp(join(root, "t-")))), "InvalidArgument", /gzip/);
    await rejectsWith(unpacker.unpack(streamOf(gz.subarray(0, gz.length - 100)), "gzip", await mkdtemp(join(root, "t-"))), "InvalidArgument", /gzip/);
  });

  it("refuses a corrupt or truncated zstd stream, leaving no zstd process", async () => {
    const zst = compress(makeTar(normalLayer), "zstd");
    const corrupt = Buffer.from(zst);
    for (let i = 30; i < 200; i++) corrupt[i] = (corrupt[i] ?? 0) ^ 0x55;
    await rejectsWith(unpacker.unpack(streamOf(corrupt), "zstd", await mkdtemp(join(root, "t-"))), "InvalidArgument", /zstd/);
    assert.deepEqual(await zstdChildren(), []);
    await rejectsWith(unpacker.unpack(streamOf(zst.subarray(0, zst.length - 50)), "zstd", await mkdtemp(join(root, "t-"))), "InvalidArgument", /zstd|truncated/);
    assert.deepEqual(await zstdChildren(), []);
  });

  it("refuses a truncated tar", async () => {
    const tar = makeTar(normalLayer);
    await rejectsWith(unpacker.unpack(streamOf(tar.subarray(0, 3000)), "none", target), "InvalidArgument", /truncated/);
    await rejectsWith(unpacker.unpack(streamOf(gzipSync(tar.subarray(0, tar.length - 1024))), "gzip", await mkdtemp(join(root, "t-"))), "InvalidArgument", /truncated/);
  });

  for (const compression of ["none", "zstd"] as const) {
    it(`stops promptly with Canceled when aborted mid-stream, zstd child included (${compression})`, async () => {
      // Incompressible, so that half of the compressed stream holds whole zstd blocks.
      const data = compress(makeTar([{ name: "first", body: "1" }, { name: "second", body: randomBytes(1 << 20) }, { name: "third", body: "3" }]), compression);
      const source = new PassThrough();
      source.write(data.subarray(0, Math.floor(data.length / 2)));
      const controller = new AbortController();
      const unpacking = unpacker.unpack(source, compression, target, { signal: controller.signal });
      try {
        for (let i = 0; i < 200; i++) {
          try {
            await lstat(join(target, "first"));
            break;
          } catch {
            await new Promise((r) => setTimeout(r, 20));
          }
        }
        await lstat(join(target, "first")); // the unpack is under way, waiting for more of the stream
      } finally {
        const started = Date.now();
        controller.abort();
        await rejectsWith(unpacking, "Canceled");
        assert.ok(Date.now() - started < 2000, `took ${Date.now() - started} ms to stop`);
      }
      assert.ok(source.destroyed, "the source is destroyed");
      assert.deepEqual(await zstdChildren(), []);
    });
  }

  it("refuses at once when the signal is already aborted", async () => {
    const source = streamOf(makeTar(normalLayer));
    await rejectsWith(unpacker.unpack(source, "zstd", target, { signal: AbortSignal.abort() }), "Canceled");
    assert.deepEqual(await readdir(target), []);
  });
});
