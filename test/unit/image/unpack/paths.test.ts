import assert from "node:assert/strict";
import { VmpodError } from "../../../../src/common/errors.js";
import { ancestorsOf, isForbiddenXattr, normalizeEntryName, roleOf } from "../../../../src/image/unpack/paths.js";
import { makedev } from "../../../../src/image/unpack/syscalls.js";

function refusedWith(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VmpodError);
    assert.equal(err.kind, "InvalidArgument");
    assert.match(err.message, pattern);
    return true;
  });
}

describe("unpack: entry names", () => {
  it("normalizes names relative to the layer's root", () => {
    const cases: [string, string][] = [
      ["etc/passwd", "etc/passwd"],
      ["./etc/passwd", "etc/passwd"],
      ["/etc/passwd", "etc/passwd"],
      ["//etc//./passwd/", "etc/passwd"],
      ["./", ""],
      ["/", ""],
      [".", ""],
      ["a/./b/.", "a/b"],
      ["...", "..."],
      ["..a/b..", "..a/b.."],
    ];
    for (const [name, expected] of cases) assert.equal(normalizeEntryName(name), expected, name);
  });

  it("refuses any .. component, escaping or not, naming the entry", () => {
    for (const name of ["..", "../evil", "a/../../evil", "/../evil", "a/../b", "a/b/..", "./../x"]) {
      assert.throws(() => normalizeEntryName(name), {
        name: "VmpodError",
        kind: "InvalidArgument",
        message: `entry ${JSON.stringify(name)}: name contains "..", which could escape the layer's root`,
      });
    }
  });

  it("refuses a NUL byte", () => refusedWith(() => normalizeEntryName("ok\0/../x"), /NUL/));

  it("lists ancestors outermost first", () => {
    assert.deepEqual(ancestorsOf("a/b/c"), ["a", "a/b"]);
    assert.deepEqual(ancestorsOf("a"), []);
    assert.deepEqual(ancestorsOf(""), []);
  });
});

describe("unpack: whiteouts", () => {
  it("tells plain entries, whiteouts, opaque markers and AUFS metadata apart", () => {
    assert.deepEqual(roleOf("etc/passwd", "e"), { kind: "plain", path: "etc/passwd" });
    assert.deepEqual(roleOf("", "e"), { kind: "plain", path: "" });
    assert.deepEqual(roleOf("etc/.wh.passwd", "e"), { kind: "whiteout", path: "etc/passwd" });
    assert.deepEqual(roleOf(".wh.top", "e"), { kind: "whiteout", path: "top" });
    assert.deepEqual(roleOf("etc/.wh..hidden", "e"), { kind: "whiteout", path: "etc/.hidden" });
    assert.deepEqual(roleOf("etc/.wh..wh..opq", "e"), { kind: "opaque", dir: "etc" });
    assert.deepEqual(roleOf(".wh..wh..opq", "e"), { kind: "opaque", dir: "" });
    assert.deepEqual(roleOf(".wh..wh.plnk", "e"), { kind: "ignored" });
    assert.deepEqual(roleOf(".wh..wh.plnk/123.456", "e"), { kind: "ignored" });
    assert.deepEqual(roleOf("a/.wh..wh.aufs", "e"), { kind: "ignored" });
    assert.deepEqual(roleOf("a.wh.b", "e"), { kind: "plain", path: "a.wh.b" });
  });

  it("refuses whiteouts that name no entry", () => {
    for (const p of ["a/.wh.", "a/.wh..", "a/.wh..."]) refusedWith(() => roleOf(p, `entry ${p}`), /whiteout names no entry/);
  });
});

describe("unpack: xattrs an image may not set", () => {
  it("forbids overlayfs's own xattrs, trusted and user (userxattr mounts)", () => {
    for (const name of ["trusted.overlay.opaque", "trusted.overlay.redirect", "trusted.overlay.metacopy", "user.overlay.opaque"]) assert.ok(isForbiddenXattr(name), name);
    for (const name of ["user.note", "security.capability", "trusted.other", "security.overlay.x", "trusted.overlayx"]) assert.ok(!isForbiddenXattr(name), name);
  });
});

describe("unpack: device numbers", () => {
  it("encodes major and minor as glibc's makedev does", () => {
    assert.equal(makedev(1, 3), 0x103n);
    assert.equal(makedev(8, 0), 0x800n);
    assert.equal(makedev(0, 0), 0n);
    // major's high bits at 44, low 12 at 8; minor's high bits at 20, low 8 at 0
    assert.equal(makedev(0x1234, 0x567), (0x1000n << 32n) | (0x234n << 8n) | (0x500n << 12n) | 0x67n);
  });
});
