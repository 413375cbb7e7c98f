/**
 * What the guest build needs to know about host binaries: the shared libraries
 * and dynamic loader a program needs (from ldd), and whether it is static.
 */
import { open } from "node:fs/promises";
import { failedPrecondition } from "../../src/common/errors.js";
import { run } from "./exec.js";

/**
 * Parses `ldd` output into the absolute paths of the libraries and the
 * dynamic loader, in order, without the vDSO. A "not found" library is an error.
 */
export function parseLdd(output: string, program: string): string[] {
  const paths: string[] = [];
  for (const raw of output.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("linux-vdso.so") || line.startsWith("linux-gate.so")) continue;
    if (line === "statically linked" || line === "not a dynamic executable") continue;
    const arrow = /^(\S+)\s+=>\s+(.*)$/.exec(line);
    if (arrow) {
      const target = arrow[2] ?? "";
      if (target.startsWith("not found")) throw failedPrecondition(`${program} needs ${arrow[1]}, which is not installed`);
      const path = /^(\/\S+)/.exec(target)?.[1];
      if (path !== undefined) paths.push(path);
      continue;
    }
    const direct = /^(\/\S+)\s+\(0x[0-9a-f]+\)$/.exec(line);
    if (direct?.[1] !== undefined) {
      paths.push(direct[1]);
      continue;
    }
    throw failedPrecondition(`unexpected ldd line for ${program}: ${JSON.stringify(line)}`);
  }
  return paths;
}

/** The shared libraries and dynamic loader `program` needs on this host. */
export async function sharedLibraries(program: string): Promise<string[]> {
  const { stdout } = await run("ldd", [program], { debianPackage: "libc-bin" });
  return parseLdd(stdout, program);
}

const PT_INTERP = 3;

/**
 * True if the ELF image in `header` (the first bytes of the file, with its
 * program headers) asks for no dynamic loader. Only 64-bit little-endian ELF.
 */
export function isStaticElf(header: Uint8Array): boolean {
  const buf = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46) throw failedPrecondition("not an ELF file");
  if (buf[4] !== 2 || buf[5] !== 1) throw failedPrecondition("not a 64-bit little-endian ELF file");
  const phoff = Number(buf.readBigUInt64LE(32));
  const phentsize = buf.readUInt16LE(54);
  const phnum = buf.readUInt16LE(56);
  if (phoff + phentsize * phnum > buf.length) throw failedPrecondition("ELF program headers beyond the bytes read");
  for (let i = 0; i < phnum; i++) {
    if (buf.readUInt32LE(phoff + i * phentsize) === PT_INTERP) return false;
  }
  return true;
}

/** Reads enough of `path` to check it with isStaticElf. */
export async function isStaticProgram(path: string): Promise<boolean> {
  const fh = await open(path, "r");
  try {
    const buf = Buffer.alloc(4096);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    return isStaticElf(buf.subarray(0, bytesRead));
  } finally {
    await fh.close();
  }
}
