import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, symlink, writeFile, link } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { VmpodError } from "../../../../src/common/errors.js";
import { readTar, type TarHeader } from "../../../../src/image/unpack/tar.js";
import { makeTar, type WriterEntry } from "../../../helpers/tar-writer.js";

interface Read {
  readonly header: TarHeader;
  readonly body: string;
}

/** Reads every entry and its body, feeding the archive in chunks of `chunk` bytes. */
async function readAll(archive: Buffer, chunk = 4096): Promise<Read[]> {
  const chunks: Buffer[] = [];
  for (let i = 0; i < archive.length; i += chunk) chunks.push(archive.subarray(i, i + chunk));
  const out: Read[] = [];
  for await (const entry of readTar(Readable.from(chunks))) {
    const parts: Buffer[] = [];
    for await (const part of entry.body()) parts.push(part);
    out.push({ header: entry.header, body: Buffer.concat(parts).toString() });
  }
  return out;
}

/** Rewrites the first header's checksum after a test edited it. */
function fixChecksum(archive: Buffer): void {
  archive.write("        ", 148, "latin1");
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += archive[i] ?? 0;
  archive.write(sum.toString(8).padStart(6, "0") + "\0 ", 148, "latin1");
}

async function refused(archive: Buffer, pattern: RegExp): Promise<void> {
  await assert.rejects(readAll(archive), (err: unknown) => {
    assert.ok(err instanceof VmpodError, String(err));
    assert.equal(err.kind, "InvalidArgument");
    assert.match(err.message, pattern);
    return true;
  });
}

describe("tar reader", () => {
  it("reads every entry type with its header fields and body, whatever the chunking", async () => {
    const entries: WriterEntry[] = [
      { name: "dir/", type: "directory", mode: 0o1755, uid: 1, gid: 2, uname: "u", gname: "g", mtime: 1234 },
      { name: "dir/file", body: "hello world", mode: 0o4755, uid: 1000, gid: 1001 },
      { name: "dir/link", type: "symlink", linkname: "/etc/target" },
      { name: "dir/hard", type: "hardlink", linkname: "dir/file" },
      { name: "dev/null", type: "char", devmajor: 1, devminor: 3, mode: 0o666 },
      { name: "dev/sda", type: "block", devmajor: 8, devminor: 0 },
      { name: "fifo", type: "fifo" },
      { name: "big", body: "x".repeat(5000) },
    ];
    const archive = makeTar(entries);
    for (const chunk of [1, 7, 512, 513, 100_000]) {
      const read = await readAll(archive, chunk);
      assert.deepEqual(
        read.map((r) => [r.header.name, r.header.type, r.body.length]),
        [
          ["dir/", "directory", 0],
          ["dir/file", "file", 11],
          ["dir/link", "symlink", 0],
          ["dir/hard", "hardlink", 0],
          ["dev/null", "char", 0],
          ["dev/sda", "block", 0],
          ["fifo", "fifo", 0],
          ["big", "file", 5000],
        ],
      );
      const [dir, file, sym, hard, dev] = read;
      assert.deepEqual(
        { mode: dir?.header.mode, uid: dir?.header.uid, gid: dir?.header.gid, uname: dir?.header.uname, gname: dir?.header.gname, mtime: dir?.header.mtime },
        { mode: 0o1755, uid: 1, gid: 2, uname: "u", gname: "g", mtime: 1234 },
      );
      assert.equal(file?.body, "hello world");
      assert.equal(file?.header.mode, 0o4755);
      assert.equal(file?.header.uid, 1000);
      assert.equal(sym?.header.linkname, "/etc/target");
      assert.equal(hard?.header.linkname, "dir/file");
      assert.deepEqual([dev?.header.devmajor, dev?.header.devminor], [1, 3]);
    }
  });

  it("skips bodies the consumer does not read", async () => {
    const archive = makeTar([{ name: "a", body: "x".repeat(3000) }, { name: "b", body: "bee" }]);
    const names: string[] = [];
    let bBody = "";
    for await (const entry of readTar(Readable.from([archive]))) {
      names.push(entry.header.name);
      if (entry.header.name === "b") for await (const part of entry.body()) bBody += part.toString();
    }
    assert.deepEqual(names, ["a", "b"]);
    assert.equal(bBody, "bee");
  });

  it("applies pax extended headers to the next entry only, and ignores global ones", async () => {
    const archive = makeTar([
      { name: "global", typeflag: "g", body: "20 comment=ignored!\n" },
      {
        name: "short",
        body: "data",
        uid: 1,
        pax: {
          path: "a/very/long/" + "n".repeat(200),
          uid: "3000000",
          gid: "4000000",
          uname: "someone",
          gname: "somegroup",
          mtime: "1700000000.5",
          "SCHILY.xattr.user.note": Buffer.from([0, 1, 2, 255]),
          "SCHILY.xattr.security.capability": "cap",
          atime: "1",
          "LIBARCHIVE.creationtime": "5",
        },
      },
      { name: "lnk", type: "symlink", linkname: "short", pax: { linkpath: "/l".repeat(100) } },
      { name: "plain", body: "p", uid: 7 },
    ]);
    const [first, second, third] = await readAll(archive);
    assert.equal(first?.header.name, "a/very/long/" + "n".repeat(200));
    assert.equal(first?.body, "data");
    assert.deepEqual([first?.header.uid, first?.header.gid, first?.header.uname, first?.header.gname], [3000000, 4000000, "someone", "somegroup"]);
    assert.equal(first?.header.mtime, 1700000000.5);
    assert.deepEqual([...(first?.header.xattrs.keys() ?? [])], ["user.note", "security.capability"]);
    assert.deepEqual(first?.header.xattrs.get("user.note"), Buffer.from([0, 1, 2, 255]));
    assert.equal(second?.header.linkname, "/l".repeat(100));
    assert.deepEqual([third?.header.name, third?.header.uid, third?.header.xattrs.size], ["plain", 7, 0]);
  });

  it("takes the size from pax over the header's", async () => {
    const archive = makeTar([{ name: "f", body: "0123456789", size: 3, pax: { size: "10" } }]);
    const [f] = await readAll(archive);
    assert.equal(f?.body, "0123456789");
  });

  it("reads GNU long names and long links", async () => {
    const longName = "d/".repeat(80) + "file";
    const longLink = "t/".repeat(80) + "target";
    const archive = makeTar(
      [
        { name: longName.slice(0, 100), gnuLongName: longName, body: "z" },
        { name: "x", type: "symlink", linkname: longLink.slice(0, 100), gnuLongLink: longLink },
      ],
      { format: "gnu" },
    );
    const [a, b] = await readAll(archive);
    assert.equal(a?.header.name, longName);
    assert.equal(a?.body, "z");
    assert.equal(b?.header.linkname, longLink);
  });

  it("joins the ustar prefix and name", async () => {
    const [a] = await readAll(makeTar([{ name: "file", prefix: "some/dir", body: "" }]));
    assert.equal(a?.header.name, "some/dir/file");
  });

  it("reads base-256 numeric fields, negative mtimes included", async () => {
    const archive = makeTar([{ name: "f", uid: 0o7777777 + 5, gid: 2 ** 40, mtime: -1000, body: "ok" }], { format: "gnu" });
    const [f] = await readAll(archive);
    assert.deepEqual([f?.header.uid, f?.header.gid, f?.header.mtime, f?.body], [0o7777777 + 5, 2 ** 40, -1000, "ok"]);
  });

  it("treats v7 regular entries ending in a slash as directories, and 'contiguous' as files", async () => {
    const [d, c] = await readAll(makeTar([{ name: "old/", typeflag: "\0" }, { name: "c", typeflag: "7", body: "cc" }]));
    assert.equal(d?.header.type, "directory");
    assert.deepEqual([c?.header.type, c?.body], ["file", "cc"]);
  });

  it("reads no body for header-only types whatever their size field says", async () => {
    const [d, f] = await readAll(makeTar([{ name: "d/", type: "directory", size: 1000 }, { name: "f", body: "x" }]));
    assert.equal(d?.header.size, 0);
    assert.equal(f?.body, "x");
  });

  it("accepts GNU tar's lone zero block at the very end, and reads trailing padding", async () => {
    assert.equal((await readAll(makeTar([{ name: "a", body: "a" }], { endBlocks: 1 }))).length, 1);
    assert.equal((await readAll(makeTar([{ name: "a", body: "a" }], { endBlocks: 20 }))).length, 1);
  });

  it("refuses a bad checksum", () => refused(makeTar([{ name: "a", badChecksum: true }]), /checksum/));

  it("refuses sparse files, by type or by pax keys, naming the entry", async () => {
    await refused(makeTar([{ name: "holes", typeflag: "S" }], { format: "gnu" }), /"holes" is a sparse file/);
    await refused(makeTar([{ name: "holes", pax: { "GNU.sparse.major": "1", "GNU.sparse.minor": "0" } }]), /"holes" is a sparse file/);
  });

  it("refuses unknown entry types, naming the entry", async () => {
    await refused(makeTar([{ name: "vol", typeflag: "V" }]), /"vol" has unknown type "V"/);
    await refused(makeTar([{ name: "weird", typeflag: "Z" }]), /"weird" has unknown type "Z"/);
  });

  it("refuses truncated streams: inside a header, a body, the padding, or before the end marker", async () => {
    const archive = makeTar([{ name: "a", body: "x".repeat(1000) }, { name: "b", body: "y" }]);
    await refused(archive.subarray(0, 100), /truncated/);
    await refused(archive.subarray(0, 512 + 600), /truncated inside entry "a"/);
    await refused(archive.subarray(0, 512 + 1000), /truncated inside entry "a"/);
    await refused(archive.subarray(0, 512 * 5), /truncated after entry "b"/);
    await refused(Buffer.alloc(0), /truncated/);
    await refused(archive.subarray(0, 512 * 5 + 100), /truncated/);
  });

  it("also refuses a truncation when the consumer skips the body", async () => {
    const archive = makeTar([{ name: "a", body: "x".repeat(1000) }]).subarray(0, 700);
    await assert.rejects(
      (async () => {
        for await (const entry of readTar(Readable.from([archive]))) void entry;
      })(),
      /truncated inside entry "a"/,
    );
  });

  it("refuses a zero block followed by more entries", () =>
    refused(Buffer.concat([Buffer.alloc(512), makeTar([{ name: "hidden", body: "h" }])]), /lone zero block followed by data/));

  it("refuses malformed pax records and oversized metadata entries", async () => {
    await refused(makeTar([{ name: "p", typeflag: "x", body: "99 path=x\n" }, { name: "a" }]), /pax header record is malformed/);
    await refused(makeTar([{ name: "p", typeflag: "x", body: "11 uid=abc\n" }, { name: "a" }]), /uid=.*not a number/);
    await refused(makeTar([{ name: "p", typeflag: "x", size: 2 << 20 }]), /larger than/);
  });

  it("refuses names that are not UTF-8", async () => {
    await refused(makeTar([{ name: "y", pax: { path: Buffer.from([0x61, 0xff]) } }]), /pax path is not UTF-8/);
    const archive = makeTar([{ name: "ab", body: "" }]);
    archive[1] = 0xff;
    fixChecksum(archive);
    await refused(archive, /entry name is not UTF-8/);
  });

  it("refuses a non-octal numeric field", async () => {
    const archive = makeTar([{ name: "a", body: "" }]);
    archive.write("12x4567\0", 108, "latin1"); // uid
    fixChecksum(archive);
    await refused(archive, /uid "12x4567" is not an octal number/);
  });

  describe("archives made by GNU tar", () => {
    let dir: string;

    before(async () => {
      dir = await mkdtemp(join(tmpdir(), "vmpod-tar-"));
      const src = join(dir, "src");
      await mkdir(join(src, "sub", "x".repeat(120)), { recursive: true });
      await writeFile(join(src, "sub", "file.txt"), "content\n");
      await writeFile(join(src, "sub", "x".repeat(120), "y".repeat(120)), "deep");
      await writeFile(join(src, "big.bin"), Buffer.alloc(100_000, 7));
      await symlink("/some/where/" + "z".repeat(150), join(src, "longlink"));
      await symlink("sub/file.txt", join(src, "rel"));
      await link(join(src, "sub", "file.txt"), join(src, "hard"));
      execFileSync("mkfifo", [join(src, "pipe")]);
    });

    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    for (const format of ["gnu", "posix", "ustar", "oldgnu"]) {
      it(`reads the --format=${format} archive of a tree${format === "ustar" ? " (without the names ustar cannot hold)" : ""}`, async () => {
        const args = ["-C", join(dir, "src"), `--format=${format}`, "--owner=4242", "--group=4343", "--mtime=@1600000000", "--sort=name", "-cf", "-"];
        const members = format === "ustar" ? ["./sub/file.txt", "./big.bin", "./rel", "./hard", "./pipe"] : ["."];
        const archive = execFileSync("tar", [...args, ...members], { maxBuffer: 1 << 24 });
        const read = await readAll(archive, 1000);
        const byName = new Map(read.map((r) => [r.header.name.replace(/\/$/, ""), r]));
        const contents = read.filter((r) => r.header.type === "file" && ["./sub/file.txt", "./hard"].includes(r.header.name));
        assert.deepEqual(contents.map((r) => r.body), ["content\n"]);
        assert.equal(byName.get("./big.bin")?.body, String.fromCharCode(7).repeat(100_000));
        assert.equal(byName.get("./rel")?.header.type, "symlink");
        assert.equal(byName.get("./rel")?.header.linkname, "sub/file.txt");
        assert.equal(byName.get("./pipe")?.header.type, "fifo");
        const hardlinks = read.filter((r) => r.header.type === "hardlink");
        assert.deepEqual(hardlinks.map((r) => r.header.linkname), [contents[0]?.header.name]);
        for (const r of read) {
          assert.deepEqual([r.header.uid, r.header.gid, Math.floor(r.header.mtime)], [4242, 4343, 1600000000], r.header.name);
        }
        if (format !== "ustar") {
          const deep = `./sub/${"x".repeat(120)}/${"y".repeat(120)}`;
          assert.equal(byName.get(deep)?.body, "deep");
          assert.equal(byName.get("./longlink")?.header.linkname, "/some/where/" + "z".repeat(150));
        }
      });
    }

    it("reads GNU tar's base-256 owner ids", async () => {
      const archive = execFileSync("tar", ["-C", join(dir, "src"), "--format=gnu", "--owner=:3000000", "--group=:2097152", "-cf", "-", "rel"]);
      const [rel] = await readAll(archive);
      assert.deepEqual([rel?.header.uid, rel?.header.gid], [3000000, 2097152]);
    });
  });
});
