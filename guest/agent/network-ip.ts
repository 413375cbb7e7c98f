/**
 * IP and MAC addresses as the guest's network code handles them: parsed from
 * the host's text into bytes (for netlink), printed back in the canonical
 * form (RFC 5952 for IPv6), and prefixes checked. Pure; undefined for
 * anything malformed, so that callers choose the error.
 */
import { isIPv4, isIPv6 } from "node:net";

export type IpFamily = 4 | 6;

export interface IpAddress {
  readonly family: IpFamily;
  /** 4 or 16 bytes, network order. */
  readonly bytes: Uint8Array;
}

/** A prefix: the address with the bits past `length` zero. */
export interface IpPrefix {
  readonly address: IpAddress;
  readonly length: number;
}

export function familyBits(family: IpFamily): number {
  return family === 4 ? 32 : 128;
}

/** Parses a plain address (no prefix, no zone). */
export function parseIp(text: string): IpAddress | undefined {
  if (isIPv4(text)) return { family: 4, bytes: Uint8Array.from(text.split(".").map(Number)) };
  if (!isIPv6(text) || text.includes("%")) return undefined;
  return { family: 6, bytes: parseIpv6(text) };
}

function parseIpv6(text: string): Uint8Array {
  const out = new Uint8Array(16);
  const groups = (part: string): number[] => {
    if (part === "") return [];
    const words: number[] = [];
    for (const piece of part.split(":")) {
      if (piece.includes(".")) {
        const [a = 0, b = 0, c = 0, d = 0] = piece.split(".").map(Number);
        words.push((a << 8) | b, (c << 8) | d);
      } else {
        words.push(Number.parseInt(piece, 16));
      }
    }
    return words;
  };
  const gap = text.indexOf("::");
  const head = groups(gap < 0 ? text : text.slice(0, gap));
  const tail = gap < 0 ? [] : groups(text.slice(gap + 2));
  const words = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/** The canonical text of 4 or 16 address bytes. */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return Array.from(bytes).join(".");
  if (bytes.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const words = Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] ?? 0) << 8) | (bytes[2 * i + 1] ?? 0));
  // IPv4-mapped addresses keep their dotted tail.
  if (words.slice(0, 5).every((w) => w === 0) && words[5] === 0xffff) return `::ffff:${Array.from(bytes.slice(12)).join(".")}`;
  // The longest run of two or more zero words becomes "::" (the first of equal runs).
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLength))}`;
}

/** A prefix length in decimal ("24"), within the family's bits. */
export function parsePrefixLength(text: string, family: IpFamily): number | undefined {
  if (!/^(0|[1-9][0-9]{0,2})$/.test(text)) return undefined;
  const length = Number(text);
  return length <= familyBits(family) ? length : undefined;
}

/** "ADDRESS/LENGTH", or a bare address as a prefix of full length. */
export function parsePrefix(text: string): IpPrefix | undefined {
  const slash = text.indexOf("/");
  const address = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (!address) return undefined;
  const length = slash < 0 ? familyBits(address.family) : parsePrefixLength(text.slice(slash + 1), address.family);
  return length === undefined ? undefined : { address, length };
}

/** True when the bits of `address` past `length` are all zero. */
export function isNetworkAddress(address: IpAddress, length: number): boolean {
  for (let bit = length; bit < address.bytes.length * 8; bit++) {
    if (((address.bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

/** The IPv4 broadcast address of `address`/`length`. */
export function ipv4Broadcast(address: Uint8Array, length: number): Uint8Array {
  const out = Uint8Array.from(address);
  for (let bit = length; bit < 32; bit++) out[bit >> 3] = (out[bit >> 3] ?? 0) | (1 << (7 - (bit & 7)));
  return out;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** An Ethernet address "aa:bb:cc:dd:ee:ff" (either case); undefined otherwise. */
export function parseMac(text: string): Uint8Array | undefined {
  if (!/^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$/.test(text)) return undefined;
  return Uint8Array.from(text.split(":").map((h) => Number.parseInt(h, 16)));
}

/** Lower-case, colon-separated hex. */
export function formatMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(":");
}
