/**
 * LZ4 decompression of the "legacy" frame format, the one Linux uses for an
 * LZ4-compressed kernel: magic 0x184C2102, then chunks of (u32 LE compressed
 * size, LZ4 block), each block decompressing to at most 8 MiB.
 */

export const LZ4_LEGACY_MAGIC = 0x184c2102;

/**
 * Decompresses one LZ4 block (sequences of token, literals, 16-bit offset and
 * match) and appends the result to `out` starting at `outPos`; returns the
 * new end. `out` must be large enough.
 */
export function decompressLz4Block(src: Uint8Array, out: Uint8Array, outPos: number): number {
  let i = 0;
  let o = outPos;
  const fail = (why: string): never => {
    throw new RangeError(`lz4: ${why} at input offset ${i}`);
  };
  while (i < src.length) {
    const token = src[i++] ?? 0;
    let literals = token >> 4;
    if (literals === 15) {
      for (let b = 255; b === 255; ) {
        if (i >= src.length) fail("truncated literal length");
        b = src[i++] ?? 0;
        literals += b;
      }
    }
    if (i + literals > src.length) fail("literals past the end");
    if (o + literals > out.length) fail("output overflow");
    out.set(src.subarray(i, i + literals), o);
    i += literals;
    o += literals;
    if (i === src.length) break; // the last sequence has literals only
    if (i + 2 > src.length) fail("truncated offset");
    const offset = (src[i] ?? 0) | ((src[i + 1] ?? 0) << 8);
    i += 2;
    // Blocks are independent: a match never reaches before the block's output.
    if (offset === 0 || o - offset < outPos) fail("bad match offset");
    let match = (token & 15) + 4;
    if ((token & 15) === 15) {
      for (let b = 255; b === 255; ) {
        if (i >= src.length) fail("truncated match length");
        b = src[i++] ?? 0;
        match += b;
      }
    }
    if (o + match > out.length) fail("output overflow");
    // Byte by byte: a match may overlap the bytes it produces.
    for (let k = 0; k < match; k++, o++) out[o] = out[o - offset] ?? 0;
  }
  return o;
}

/**
 * Decompresses a legacy LZ4 frame of `expectedSize` bytes (the kernel stores
 * the uncompressed size after the frame). Chunks are read until the frame
 * ends at `src.length`.
 */
export function decompressLz4Legacy(src: Uint8Array, expectedSize: number): Uint8Array {
  const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
  if (src.length < 4 || view.getUint32(0, true) !== LZ4_LEGACY_MAGIC) throw new RangeError("lz4: not a legacy LZ4 frame");
  const out = new Uint8Array(expectedSize);
  let pos = 4;
  let o = 0;
  while (pos + 4 <= src.length) {
    const size = view.getUint32(pos, true);
    if (size === LZ4_LEGACY_MAGIC) {
      pos += 4; // concatenated frames
      continue;
    }
    pos += 4;
    if (pos + size > src.length) throw new RangeError(`lz4: chunk of ${size} bytes past the end`);
    o = decompressLz4Block(src.subarray(pos, pos + size), out, o);
    pos += size;
  }
  if (o !== expectedSize) throw new RangeError(`lz4: ${o} bytes decompressed, ${expectedSize} expected`);
  return out;
}
