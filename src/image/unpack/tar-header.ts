/**
 * Decoding of one tar header block (v7, ustar and GNU layouts) and of the
 * bodies of the metadata entries that precede a real one: pax extended
 * headers and GNU long names. Pure functions over bytes; the stream reader
 * (tar.ts) strings them together.
 */
import { VmpodError } from "../../common/errors.js";

export const BLOCK = 512;

/** What a header block says before pax or GNU long names are applied. */
export interface RawHeader {
  readonly name: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  readonly size: number;
  readonly mtime: number;
  readonly typeflag: string;
  readonly linkname: string;
  readonly uname: string;
  readonly gname: string;
  readonly devmajor: number;
  readonly devminor: number;
}

/** The keys of a pax extended header that vmpod uses; the others are ignored. */
export interface PaxRecords {
  path?: string;
  linkpath?: string;
  size?: number;
  uid?: number;
  gid?: number;
  uname?: string;
  gname?: string;
  mtime?: number;
  /** SCHILY.xattr.NAME, by NAME. */
  readonly xattrs: Map<string, Buffer>;
  /** True when GNU.sparse.* keys say the entry is a sparse file. */
  sparse: boolean;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function invalid(message: string): VmpodError {
  return new VmpodError("InvalidArgument", message);
}

export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < block.length; i++) if (block[i] !== 0) return false;
  return true;
}

/** Text that must be UTF-8 (names are written as such on the host). */
export function decodeText(bytes: Uint8Array, what: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw invalid(`${what} is not UTF-8`);
  }
}

/** A NUL-terminated string field. */
function cString(block: Buffer, offset: number, length: number, what: string): string {
  const field = block.subarray(offset, offset + length);
  const end = field.indexOf(0);
  return decodeText(end === -1 ? field : field.subarray(0, end), what);
}

/**
 * A numeric field: octal text (padded with spaces or NULs), or base-256
 * (the high bit of the first byte set: big-endian two's complement of the rest).
 */
export function parseNumeric(field: Uint8Array, what: string, allowNegative = false): number {
  const first = field[0] ?? 0;
  let value: bigint;
  if (first & 0x80) {
    const negative = (first & 0x40) !== 0;
    value = BigInt(first & 0x7f) - (negative ? 0x80n : 0n);
    for (let i = 1; i < field.length; i++) value = (value << 8n) | BigInt(field[i] ?? 0);
  } else {
    let text = "";
    for (const byte of field) {
      if (byte === 0) break;
      text += String.fromCharCode(byte);
    }
    text = text.trim();
    if (text === "") return 0;
    if (!/^[0-7]+$/.test(text)) throw invalid(`${what} ${JSON.stringify(text)} is not an octal number`);
    value = BigInt(`0o${text}`);
  }
  if (value < 0n && !allowNegative) throw invalid(`${what} is negative`);
  if (value > BigInt(Number.MAX_SAFE_INTEGER) || value < -BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`${what} is too large`);
  return Number(value);
}

/** Checks the header checksum: the byte sum with the checksum field read as spaces (unsigned, or signed as old tars did). */
function verifyChecksum(block: Buffer): void {
  const stored = parseNumeric(block.subarray(148, 156), "header checksum");
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const byte = i >= 148 && i < 156 ? 0x20 : (block[i] ?? 0);
    unsigned += byte;
    signed += byte >= 0x80 ? byte - 0x100 : byte;
  }
  if (stored !== unsigned && stored !== signed) throw invalid(`tar header checksum mismatch (stored ${stored}, computed ${unsigned})`);
}

/** Decodes a (non-zero) header block; the checksum is verified first. */
export function parseHeaderBlock(block: Buffer): RawHeader {
  verifyChecksum(block);
  const magic = block.subarray(257, 263).toString("latin1");
  const ustar = magic === "ustar\0"; // POSIX ustar and pax; GNU writes "ustar " and uses the prefix area for other fields
  let name = cString(block, 0, 100, "entry name");
  if (ustar) {
    const prefix = cString(block, 345, 155, "entry name prefix");
    if (prefix !== "") name = `${prefix}/${name}`;
  }
  const where = `entry ${JSON.stringify(name)}`;
  const hasOwnerNames = ustar || magic === "ustar ";
  return {
    name,
    mode: parseNumeric(block.subarray(100, 108), `${where}: mode`),
    uid: parseNumeric(block.subarray(108, 116), `${where}: uid`),
    gid: parseNumeric(block.subarray(116, 124), `${where}: gid`),
    size: parseNumeric(block.subarray(124, 136), `${where}: size`),
    mtime: parseNumeric(block.subarray(136, 148), `${where}: mtime`, true),
    typeflag: String.fromCharCode(block[156] ?? 0),
    linkname: cString(block, 157, 100, `${where}: link name`),
    uname: hasOwnerNames ? cString(block, 265, 32, `${where}: user name`) : "",
    gname: hasOwnerNames ? cString(block, 297, 32, `${where}: group name`) : "",
    devmajor: hasOwnerNames ? parseNumeric(block.subarray(329, 337), `${where}: device major`) : 0,
    devminor: hasOwnerNames ? parseNumeric(block.subarray(337, 345), `${where}: device minor`) : 0,
  };
}

/** The body of a GNU long name ('L') or long link ('K') entry: a NUL-terminated string. */
export function parseLongName(body: Buffer, what: string): string {
  const end = body.indexOf(0);
  return decodeText(end === -1 ? body : body.subarray(0, end), what);
}

function paxInteger(value: string, key: string): number {
  if (!/^\d{1,15}$/.test(value)) throw invalid(`pax header ${key}=${JSON.stringify(value)} is not a number`);
  return Number(value);
}

function paxTime(value: string, key: string): number {
  if (!/^-?\d{1,15}(\.\d*)?$/.test(value)) throw invalid(`pax header ${key}=${JSON.stringify(value)} is not a time`);
  return Number(value);
}

/**
 * Parses the records of a pax extended header ("LEN KEY=VALUE\n", LEN
 * counting the whole record) into `into`; later records override earlier ones.
 */
export function parsePax(body: Buffer, into: PaxRecords): void {
  let pos = 0;
  while (pos < body.length) {
    if (body[pos] === 0) break; // some writers pad the body with NULs
    const space = body.indexOf(0x20, pos);
    if (space === -1) throw invalid("pax header record has no length");
    const lengthText = body.subarray(pos, space).toString("latin1");
    if (!/^\d{1,9}$/.test(lengthText)) throw invalid(`pax header record length ${JSON.stringify(lengthText)} is not a number`);
    const length = Number(lengthText);
    const end = pos + length;
    if (length <= space - pos + 1 || end > body.length || body[end - 1] !== 0x0a) throw invalid("pax header record is malformed");
    const record = body.subarray(space + 1, end - 1);
    const eq = record.indexOf(0x3d);
    if (eq === -1) throw invalid("pax header record has no '='");
    const key = decodeText(record.subarray(0, eq), "pax header key");
    const raw = record.subarray(eq + 1);
    pos = end;
    if (key.startsWith("SCHILY.xattr.")) {
      into.xattrs.set(key.slice("SCHILY.xattr.".length), Buffer.from(raw));
      continue;
    }
    if (key.startsWith("GNU.sparse.")) {
      into.sparse = true;
      continue;
    }
    switch (key) {
      case "path":
        into.path = decodeText(raw, "pax path");
        break;
      case "linkpath":
        into.linkpath = decodeText(raw, "pax linkpath");
        break;
      case "size":
        into.size = paxInteger(decodeText(raw, key), key);
        break;
      case "uid":
        into.uid = paxInteger(decodeText(raw, key), key);
        break;
      case "gid":
        into.gid = paxInteger(decodeText(raw, key), key);
        break;
      case "uname":
        into.uname = decodeText(raw, key);
        break;
      case "gname":
        into.gname = decodeText(raw, key);
        break;
      case "mtime":
        into.mtime = paxTime(decodeText(raw, key), key);
        break;
      default:
        break; // atime, ctime, comment, charset, vendor keys: not used
    }
  }
}

export function emptyPax(): PaxRecords {
  return { xattrs: new Map(), sparse: false };
}
