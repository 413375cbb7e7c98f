import assert from "node:assert/strict";
import { decompressLz4Block, decompressLz4Legacy, LZ4_LEGACY_MAGIC } from "../../../guest/build/lz4.js";

function block(src: number[] | Buffer, size: number): string {
  const out = new Uint8Array(size);
  const end = decompressLz4Block(Uint8Array.from(src), out, 0);
  return Buffer.from(out.subarray(0, end)).toString("latin1");
}

function frame(blocks: Buffer[]): Buffer {
  const parts: Buffer[] = [Buffer.alloc(4)];
  parts[0]?.writeUInt32LE(LZ4_LEGACY_MAGIC);
  for (const b of blocks) {
    const size = Buffer.alloc(4);
    size.writeUInt32LE(b.length);
    parts.push(size, b);
  }
  return Buffer.concat(parts);
}

// "abc", then a match of 9 bytes 3 back (overlapping itself), then "X".
const ABC = Buffer.from([0x35, 0x61, 0x62, 0x63, 0x03, 0x00, 0x10, 0x58]);

describe("lz4 (legacy frame)", () => {
  it("decodes literals and overlapping matches", () => {
    assert.equal(block(ABC, 64), "abcabcabcabcX");
  });

  it("decodes extended literal and match lengths", () => {
    // 20 literals (15 + 5), then a match of 4 + 15 + 1 = 20 bytes at offset 1.
    const literals = Buffer.from("ABCDEFGHIJKLMNOPQRSZ");
    const src = Buffer.concat([Buffer.from([0xff, 5]), literals, Buffer.from([1, 0, 1])]);
    assert.equal(block(src, 64), "ABCDEFGHIJKLMNOPQRSZ" + "Z".repeat(20));
  });

  it("decodes a frame of independent blocks", () => {
    const out = decompressLz4Legacy(frame([ABC, Buffer.from([0x20, 0x21, 0x21])]), 15);
    assert.equal(Buffer.from(out).toString("latin1"), "abcabcabcabcX!!");
  });

  it("rejects bad input", () => {
    assert.throws(() => decompressLz4Legacy(Buffer.from([1, 2, 3, 4]), 1), /not a legacy LZ4 frame/);
    assert.throws(() => decompressLz4Legacy(frame([ABC]), 20), /13 bytes decompressed, 20 expected/);
    assert.throws(() => block([0x10, 0x61, 0x05, 0x00], 64), /bad match offset/);
    assert.throws(() => block(ABC, 5), /output overflow/);
    // A match may not reach into an earlier block's output.
    assert.throws(() => decompressLz4Legacy(frame([ABC, Buffer.from([0x00, 0x01, 0x00])]), 17), /bad match offset/);
  });
});
