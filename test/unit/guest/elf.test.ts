import assert from "node:assert/strict";
import { isStaticElf, parseLdd } from "../../../guest/build/elf.js";
import { bzImagePayload, hasPvhEntry } from "../../../guest/build/vmlinux.js";

// `ldd /usr/bin/node` on Debian 12.
const LDD_NODE = `\tlinux-vdso.so.1 (0x00007f858a6da000)
\tlibdl.so.2 => /lib/x86_64-linux-gnu/libdl.so.2 (0x00007f858a6c3000)
\tlibstdc++.so.6 => /lib/x86_64-linux-gnu/libstdc++.so.6 (0x00007f858a400000)
\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f858a13e000)
\t/lib64/ld-linux-x86-64.so.2 (0x00007f858a6dc000)
`;

/** A 64-bit little-endian ELF header with the given program headers (type, offset, filesz). */
function elf(phdrs: [number, number, number][], size = 4096): Buffer {
  const buf = Buffer.alloc(size);
  buf.writeUInt32BE(0x7f454c46, 0);
  buf[4] = 2;
  buf[5] = 1;
  buf.writeBigUInt64LE(64n, 32);
  buf.writeUInt16LE(56, 54);
  buf.writeUInt16LE(phdrs.length, 56);
  phdrs.forEach(([type, offset, filesz], i) => {
    const ph = 64 + i * 56;
    buf.writeUInt32LE(type, ph);
    buf.writeBigUInt64LE(BigInt(offset), ph + 8);
    buf.writeBigUInt64LE(BigInt(filesz), ph + 32);
  });
  return buf;
}

/** An ELF note at `offset`. */
function note(buf: Buffer, offset: number, name: string, type: number, desc: number): number {
  const nameBytes = Buffer.from(name + "\0");
  buf.writeUInt32LE(nameBytes.length, offset);
  buf.writeUInt32LE(desc, offset + 4);
  buf.writeUInt32LE(type, offset + 8);
  nameBytes.copy(buf, offset + 12);
  return 12 + ((nameBytes.length + 3) & ~3) + ((desc + 3) & ~3);
}

describe("guest ELF helpers", () => {
  it("lists the libraries and the loader from ldd, without the vDSO", () => {
    assert.deepEqual(parseLdd(LDD_NODE, "node"), [
      "/lib/x86_64-linux-gnu/libdl.so.2",
      "/lib/x86_64-linux-gnu/libstdc++.so.6",
      "/lib/x86_64-linux-gnu/libc.so.6",
      "/lib64/ld-linux-x86-64.so.2",
    ]);
    assert.deepEqual(parseLdd("\tstatically linked\n", "busybox"), []);
  });

  it("fails on a missing library", () => {
    assert.throws(() => parseLdd("\tlibyajl.so.2 => not found\n", "crun"), /crun needs libyajl.so.2/);
  });

  it("tells static from dynamic programs by PT_INTERP", () => {
    assert.equal(isStaticElf(elf([[1, 0, 0]])), true);
    assert.equal(isStaticElf(elf([[1, 0, 0], [3, 0, 0]])), false);
    assert.throws(() => isStaticElf(Buffer.from("#!/bin/sh\n".padEnd(64))), /not an ELF/);
  });

  it("finds the PVH entry note", () => {
    const withPvh = elf([[4, 1024, 200]]);
    const first = note(withPvh, 1024, "Linux", 6, 6);
    note(withPvh, 1024 + first, "Xen", 18, 8);
    assert.equal(hasPvhEntry(withPvh), true);
    const withoutPvh = elf([[4, 1024, 200]]);
    note(withoutPvh, 1024, "Xen", 6, 8);
    assert.equal(hasPvhEntry(withoutPvh), false);
    assert.equal(hasPvhEntry(Buffer.alloc(100)), false);
  });

  it("locates a bzImage's payload from its boot header", () => {
    const image = Buffer.alloc(8192);
    image[0x1f1] = 3; // setup sectors: protected-mode code at 4 * 512
    image.writeUInt32LE(0x53726448, 0x202);
    image.writeUInt16LE(0x20f, 0x206);
    image.writeUInt32LE(100, 0x248);
    image.writeUInt32LE(50, 0x24c);
    image.write("PAYLOAD", 2048 + 100, "latin1");
    const payload = bzImagePayload(image);
    assert.equal(payload.length, 50);
    assert.equal(Buffer.from(payload.subarray(0, 7)).toString("latin1"), "PAYLOAD");
    assert.throws(() => bzImagePayload(Buffer.alloc(8192)), /not a bzImage/);
  });
});
