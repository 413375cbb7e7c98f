import assert from "node:assert/strict";
import zlib from "node:zlib";
import { SPDY3_DICTIONARY } from "../../../../src/cri/streaming/spdy-dictionary.js";
import { FLAG_FIN, FrameParser, encodeFrame, type Frame } from "../../../../src/cri/streaming/spdy-frames.js";
import { HeaderCompressor, HeaderDecompressor, decodeHeaderBlock, encodeHeaderBlock, headerMap } from "../../../../src/cri/streaming/spdy-headers.js";

const frames: Frame[] = [
  { kind: "data", streamId: 3, flags: FLAG_FIN, data: Buffer.from("hello") },
  { kind: "data", streamId: 0x7fffffff, flags: 0, data: Buffer.alloc(0) },
  { kind: "syn_stream", streamId: 5, associatedId: 0, priority: 7, slot: 0, flags: FLAG_FIN, headerBlock: Buffer.from([1, 2, 3]) },
  { kind: "syn_reply", streamId: 5, flags: 0, headerBlock: Buffer.from([9]) },
  { kind: "headers", streamId: 7, flags: FLAG_FIN, headerBlock: Buffer.alloc(0) },
  { kind: "rst_stream", streamId: 9, status: 5 },
  { kind: "settings", flags: 0, settings: [{ id: 7, flags: 1, value: 65536 }, { id: 4, flags: 0, value: 100 }] },
  { kind: "ping", id: 0xfffffffe },
  { kind: "goaway", lastGoodStreamId: 11, status: 0 },
  { kind: "window_update", streamId: 0, delta: 32768 },
];

describe("SPDY/3.1 frames", () => {
  it("round-trips every frame type through the parser, even fed one byte at a time", () => {
    const wire = Buffer.concat(frames.map(encodeFrame));
    const parser = new FrameParser();
    const out: Frame[] = [];
    for (const byte of wire) {
      parser.push(Buffer.from([byte]));
      for (let f = parser.next(); f; f = parser.next()) out.push(f);
    }
    assert.deepEqual(out, frames);
    assert.equal(parser.pending, 0);
  });

  it("lays out control and data frame headers as the specification says", () => {
    const ping = encodeFrame({ kind: "ping", id: 1 });
    assert.deepEqual([...ping], [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]);
    const data = encodeFrame({ kind: "data", streamId: 1, flags: FLAG_FIN, data: Buffer.from("ab") });
    assert.deepEqual([...data], [0x00, 0x00, 0x00, 0x01, 0x01, 0x00, 0x00, 0x02, 0x61, 0x62]);
    const wu = encodeFrame({ kind: "window_update", streamId: 3, delta: 0x10000 });
    assert.deepEqual([...wu], [0x80, 0x03, 0x00, 0x09, 0x00, 0x00, 0x00, 0x08, 0, 0, 0, 3, 0, 1, 0, 0]);
  });

  it("refuses frames of another version and oversized frames", () => {
    const v2 = encodeFrame({ kind: "ping", id: 1 });
    v2.writeUInt16BE(0x8002, 0);
    const parser = new FrameParser();
    parser.push(v2);
    assert.throws(() => parser.next(), (err: Error & { kind?: string }) => err.kind === "InvalidArgument" && /version 2/.test(err.message));
    const small = new FrameParser(16);
    small.push(encodeFrame({ kind: "data", streamId: 1, flags: 0, data: Buffer.alloc(17) }));
    assert.throws(() => small.next(), /exceeds 16/);
  });

  it("passes unknown control frame types through as unknown", () => {
    const parser = new FrameParser();
    parser.push(encodeFrame({ kind: "unknown", type: 10, flags: 0, payload: Buffer.from("x") }));
    assert.deepEqual(parser.next(), { kind: "unknown", type: 10, flags: 0, payload: Buffer.from("x") });
  });
});

describe("SPDY/3 header blocks", () => {
  it("has the dictionary of the SPDY/3 specification (length and zlib dictionary id)", () => {
    assert.equal(SPDY3_DICTIONARY.length, 1423);
    // A zlib stream with a preset dictionary carries the dictionary's Adler-32 after its 2-byte header.
    const z = zlib.deflateSync(Buffer.from("x"), { dictionary: SPDY3_DICTIONARY });
    assert.equal(z.readUInt32BE(2), 0xe3c6a7c2);
  });

  it("encodes name/value blocks with 32-bit lengths and NUL-joined values", () => {
    const block = encodeHeaderBlock(headerMap({ StreamType: "stdin", multi: ["a", "b"] }));
    assert.deepEqual(
      block,
      Buffer.concat([
        Buffer.from([0, 0, 0, 2, 0, 0, 0, 10]), Buffer.from("streamtype"), Buffer.from([0, 0, 0, 5]), Buffer.from("stdin"),
        Buffer.from([0, 0, 0, 5]), Buffer.from("multi"), Buffer.from([0, 0, 0, 3]), Buffer.from("a\0b"),
      ]),
    );
    assert.deepEqual(decodeHeaderBlock(block), new Map([["streamtype", ["stdin"]], ["multi", ["a", "b"]]]));
    assert.throws(() => decodeHeaderBlock(block.subarray(0, block.length - 1)), /truncated/);
  });

  it("keeps one compression context per direction across blocks", async () => {
    const out = new HeaderCompressor();
    const back = new HeaderDecompressor();
    const blocks = [];
    for (let i = 0; i < 20; i++) blocks.push(headerMap({ streamtype: i % 2 ? "stdout" : "stderr", requestid: String(i), port: "8080" }));
    const wire = await Promise.all(blocks.map((b) => out.compress(b)));
    // Later blocks reuse the context's history: repeated headers shrink.
    assert.ok(wire[19]!.length < wire[0]!.length, `block 20 (${wire[19]!.length} bytes) should be smaller than block 1 (${wire[0]!.length})`);
    for (let i = 0; i < blocks.length; i++) assert.deepEqual(await back.decompress(wire[i]!), blocks[i]);
    // A fresh context cannot read a later block on its own.
    const fresh = new HeaderDecompressor();
    await assert.rejects(fresh.decompress(wire[5]!));
    out.close();
    back.close();
    fresh.close();
  });

  it("reads blocks compressed by plain zlib with the dictionary (what another implementation sends)", async () => {
    const deflate = zlib.createDeflate({ dictionary: SPDY3_DICTIONARY });
    const chunks: Buffer[] = [];
    deflate.on("data", (c: Buffer) => chunks.push(c));
    deflate.write(encodeHeaderBlock(headerMap({ streamtype: "error" })));
    await new Promise<void>((r) => deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => r()));
    const back = new HeaderDecompressor();
    assert.deepEqual(await back.decompress(Buffer.concat(chunks)), headerMap({ streamtype: "error" }));
    back.close();
    deflate.close();
  });
});
