/**
 * Image layers as erofs images, checked by mounting them on the host: what
 * an unpacked layer holds (owners, modes, mtimes, symlinks, hard links,
 * device nodes, fifos, extended attributes, and overlayfs's whiteouts and
 * opaque directories) is what the image holds, and two such images under
 * an overlay show the merged view a container expects. Needs root (mknod,
 * chown, loop mounts).
 */
import assert from "node:assert/strict";
import { chmod, link, lstat, lutimes, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile, lchown, chown } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import koffi from "koffi";
import { VmpodError } from "../../../src/common/errors.js";
import { run } from "../../../src/common/exec.js";
import { mountPoints, overlayMount, unmount } from "../../../src/common/mount.js";
import { buildErofsLayer } from "../../../src/image/erofs-layer.js";

const libc = koffi.load("libc.so.6");
const lsetxattr = libc.func("int lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags)");
const lgetxattr = libc.func("long lgetxattr(const char *path, const char *name, _Out_ uint8_t *value, size_t size)");
const llistxattr = libc.func("long llistxattr(const char *path, _Out_ uint8_t *list, size_t size)");

function setXattr(path: string, name: string, value: string): void {
  const data = Buffer.from(value);
  assert.equal(lsetxattr(path, name, data, data.length, 0), 0, `setxattr ${name} on ${path}`);
}

function getXattr(path: string, name: string): string | undefined {
  const out = Buffer.alloc(256);
  const n = Number(lgetxattr(path, name, out, out.length));
  return n < 0 ? undefined : out.subarray(0, n).toString();
}

function listXattrs(path: string): string[] {
  const out = Buffer.alloc(1024);
  const n = Number(llistxattr(path, out, out.length));
  assert.ok(n >= 0, `listxattr ${path}`);
  return out.subarray(0, n).toString().split("\0").filter((s) => s !== "").sort();
}

const isRoot = process.getuid?.() === 0;
const T2001 = new Date("2001-02-03T04:05:06.789Z");
const T2002 = new Date("2002-03-04T05:06:07Z");

describe("erofs image layers (host mounts)", function () {
  this.timeout(60_000);
  let dir: string;
  const mounted: string[] = [];

  before(function () {
    if (!isRoot) {
      process.stderr.write("      skipped: needs root for mknod, chown and loop mounts\n");
      this.skip();
    }
  });

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-erofs-"));
  });

  afterEach(async () => {
    for (const m of mounted.splice(0).reverse()) await unmount(m).catch(() => {});
    if (dir) {
      const left = (await mountPoints()).filter((p) => p.startsWith(dir + "/"));
      await rm(dir, { recursive: true, force: true });
      assert.deepEqual(left, [], "mounts left behind");
    }
  });

  async function mountErofs(image: string, at: string): Promise<void> {
    await mkdir(at, { recursive: true });
    await run("mount", ["-t", "erofs", "-o", "loop,ro", image, at]);
    mounted.push(at);
  }

  /** A lower layer: everything a layer may hold. */
  async function makeLower(root: string): Promise<void> {
    await mkdir(join(root, "etc"), { recursive: true });
    await writeFile(join(root, "etc/config"), "lower config\n");
    await writeFile(join(root, "etc/gone"), "deleted by the upper layer\n");
    await mkdir(join(root, "cache"));
    await writeFile(join(root, "cache/old"), "hidden by an opaque dir\n");
    await writeFile(join(root, "suid"), "#!/bin/sh\n");
    await chown(join(root, "suid"), 1234, 5678);
    await chmod(join(root, "suid"), 0o4751);
    await utimes(join(root, "suid"), T2001, T2001);
    await link(join(root, "suid"), join(root, "suid-link"));
    await symlink("etc/config", join(root, "config-link"));
    await lchown(join(root, "config-link"), 42, 43);
    await lutimes(join(root, "config-link"), T2002, T2002);
    await run("mknod", ["-m", "0620", join(root, "null-dev"), "c", "1", "3"]);
    await run("mknod", ["-m", "0600", join(root, "loop-dev"), "b", "7", "0"]);
    await run("mkfifo", [join(root, "fifo")]);
    setXattr(join(root, "etc/config"), "user.vmpod.test", "kept");
    await chmod(join(root, "etc"), 0o750);
    await utimes(join(root, "etc"), T2002, T2002);
  }

  /** An upper layer in overlayfs form: a whiteout, an opaque directory, a new file. */
  async function makeUpper(root: string): Promise<void> {
    await mkdir(join(root, "etc"), { recursive: true });
    await run("mknod", [join(root, "etc/gone"), "c", "0", "0"]);
    await writeFile(join(root, "etc/new"), "from the upper layer\n");
    await mkdir(join(root, "cache"));
    setXattr(join(root, "cache"), "trusted.overlay.opaque", "y");
    await writeFile(join(root, "cache/fresh"), "only this\n");
  }

  it("keeps owners, modes, mtimes, hard links, symlinks, devices, fifos and xattrs", async () => {
    const layer = join(dir, "lower");
    await makeLower(layer);
    const image = join(dir, "lower.erofs");
    const built = await buildErofsLayer(layer, image);
    assert.equal(built.path, image);
    assert.equal(built.sizeBytes, (await stat(image)).size);
    const m = join(dir, "m");
    await mountErofs(image, m);

    const suid = await lstat(join(m, "suid"));
    assert.equal(suid.mode & 0o7777, 0o4751);
    assert.deepEqual([suid.uid, suid.gid], [1234, 5678]);
    assert.equal(suid.mtimeMs, T2001.getTime(), "mtime to the millisecond");
    const hard = await lstat(join(m, "suid-link"));
    assert.equal(hard.ino, suid.ino, "a hard link is the same inode");
    assert.equal(suid.nlink, 2);
    const sym = await lstat(join(m, "config-link"));
    assert.ok(sym.isSymbolicLink());
    assert.equal(await readlink(join(m, "config-link")), "etc/config");
    assert.deepEqual([sym.uid, sym.gid, sym.mtimeMs], [42, 43, T2002.getTime()]);
    const chr = await lstat(join(m, "null-dev"));
    assert.ok(chr.isCharacterDevice());
    assert.equal(chr.rdev, (1 << 8) | 3);
    assert.equal(chr.mode & 0o7777, 0o620);
    const blk = await lstat(join(m, "loop-dev"));
    assert.ok(blk.isBlockDevice());
    assert.equal(blk.rdev, 7 << 8);
    assert.ok((await lstat(join(m, "fifo"))).isFIFO());
    const etc = await lstat(join(m, "etc"));
    assert.equal(etc.mode & 0o7777, 0o750);
    assert.equal(etc.mtimeMs, T2002.getTime(), "directories keep their mtime too");
    assert.equal(await readFile(join(m, "etc/config"), "utf8"), "lower config\n");
    assert.equal(getXattr(join(m, "etc/config"), "user.vmpod.test"), "kept");
  });

  it("keeps whiteouts (0/0 character devices) and trusted.overlay.opaque, which a guest overlay reads as the host's would", async () => {
    const lower = join(dir, "lower");
    const upper = join(dir, "upper");
    await makeLower(lower);
    await makeUpper(upper);
    await buildErofsLayer(lower, join(dir, "lower.erofs"));
    await buildErofsLayer(upper, join(dir, "upper.erofs"), { compression: "lz4hc" });
    const ml = join(dir, "ml");
    const mu = join(dir, "mu");
    await mountErofs(join(dir, "lower.erofs"), ml);
    await mountErofs(join(dir, "upper.erofs"), mu);

    const wh = await lstat(join(mu, "etc/gone"));
    assert.ok(wh.isCharacterDevice() && wh.rdev === 0, "the whiteout is a 0/0 character device");
    assert.equal(getXattr(join(mu, "cache"), "trusted.overlay.opaque"), "y");
    assert.deepEqual(listXattrs(join(mu, "cache")), ["trusted.overlay.opaque"]);

    const merged = join(dir, "merged");
    await mkdir(join(dir, "rw/upper"), { recursive: true });
    await mkdir(join(dir, "rw/work"));
    await mkdir(merged);
    await overlayMount([mu, ml], join(dir, "rw/upper"), join(dir, "rw/work"), merged);
    mounted.push(merged);
    assert.deepEqual((await readdir(join(merged, "etc"))).sort(), ["config", "new"], "the whiteout hides etc/gone");
    assert.deepEqual(await readdir(join(merged, "cache")), ["fresh"], "the opaque directory hides the lower one's files");
    assert.equal(await readFile(join(merged, "etc/new"), "utf8"), "from the upper layer\n");
  });

  it("replaces an existing image whole, and leaves nothing when it fails or is canceled", async () => {
    const layer = join(dir, "layer");
    await mkdir(layer);
    await writeFile(join(layer, "a"), "a");
    const out = join(dir, "out");
    await mkdir(out);
    const image = join(out, "layer.erofs");
    await writeFile(image, "stale");
    await buildErofsLayer(layer, image);
    assert.notEqual(await readFile(image, "utf8"), "stale");
    assert.deepEqual(await readdir(out), ["layer.erofs"]);

    const isKind = (kind: string) => (err: unknown) => err instanceof VmpodError && err.kind === kind;
    await assert.rejects(buildErofsLayer(join(dir, "missing"), join(out, "x.erofs")), isKind("NotFound"));
    await assert.rejects(buildErofsLayer(join(layer, "a"), join(out, "x.erofs")), isKind("InvalidArgument"));
    await assert.rejects(buildErofsLayer(layer, join(out, "x.erofs"), { mkfsPath: "/bin/false" }), isKind("Internal"));
    await assert.rejects(buildErofsLayer(layer, join(out, "x.erofs"), { mkfsPath: "/nonexistent/mkfs.erofs" }), isKind("FailedPrecondition"));
    await assert.rejects(buildErofsLayer(layer, join(out, "x.erofs"), { signal: AbortSignal.abort() }), isKind("Canceled"));
    const hang = join(dir, "hanging-mkfs");
    await writeFile(hang, "#!/bin/sh\nexec sleep 30\n", { mode: 0o755 });
    const abort = new AbortController();
    const slow = buildErofsLayer(layer, join(out, "x.erofs"), { mkfsPath: hang, signal: abort.signal });
    setTimeout(() => abort.abort(), 50);
    await assert.rejects(slow, isKind("Canceled"));
    assert.deepEqual(await readdir(out), ["layer.erofs"], "no temporary file is left");
  });
});
