import assert from "node:assert/strict";
import { buildCpio } from "../../../guest/build/cpio.js";

interface Parsed {
  name: string;
  mode: number;
  rdev: [number, number];
  data: Buffer;
}

/** Reads a newc archive back, checking the 4-byte alignment of headers and data. */
function parse(archive: Buffer): Parsed[] {
  const out: Parsed[] = [];
  let pos = 0;
  const align = (n: number) => (n + 3) & ~3;
  for (;;) {
    assert.equal(pos % 4, 0, "header aligned");
    assert.equal(archive.toString("ascii", pos, pos + 6), "070701");
    const field = (i: number) => parseInt(archive.toString("ascii", pos + 6 + i * 8, pos + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const rdev: [number, number] = [field(9), field(10)];
    const nameSize = field(11);
    const name = archive.toString("utf8", pos + 110, pos + 110 + nameSize - 1);
    assert.equal(archive[pos + 110 + nameSize - 1], 0);
    const dataStart = align(pos + 110 + nameSize);
    const data = archive.subarray(dataStart, dataStart + size);
    pos = align(dataStart + size);
    if (name === "TRAILER!!!") break;
    out.push({ name, mode, rdev, data });
  }
  assert.equal(pos, archive.length, "nothing after the trailer");
  return out;
}

describe("cpio (newc)", () => {
  it("writes directories, files, symlinks and device nodes the kernel can unpack", () => {
    const archive = buildCpio([
      { type: "dir", path: "dev" },
      { type: "char", path: "/dev/console", major: 5, minor: 1 },
      { type: "file", path: "init", data: Buffer.from("#!/bin/sh\n"), mode: 0o755 },
      { type: "symlink", path: "bin/sh", target: "busybox" },
      { type: "file", path: "odd", data: Buffer.from("12345") },
    ]);
    const entries = parse(archive);
    assert.deepEqual(
      entries.map((e) => [e.name, e.mode.toString(8)]),
      [
        ["dev", "40755"],
        ["dev/console", "20600"],
        ["init", "100755"],
        ["bin/sh", "120777"],
        ["odd", "100644"],
      ],
    );
    assert.deepEqual(entries[1]?.rdev, [5, 1]);
    assert.equal(entries[2]?.data.toString(), "#!/bin/sh\n");
    assert.equal(entries[3]?.data.toString(), "busybox");
    assert.equal(entries[4]?.data.toString(), "12345");
  });

  it("is reproducible", () => {
    const entries = [{ type: "file", path: "a", data: Buffer.from("x") }] as const;
    assert.deepEqual(buildCpio(entries), buildCpio(entries));
  });

  it("rejects duplicate and escaping paths", () => {
    assert.throws(() => buildCpio([{ type: "dir", path: "a" }, { type: "dir", path: "/a/" }]), /duplicate/);
    assert.throws(() => buildCpio([{ type: "dir", path: "../a" }]), /bad path/);
    assert.throws(() => buildCpio([{ type: "dir", path: "/" }]), /bad path/);
  });
});
