import assert from "node:assert/strict";
import {
  formatIp,
  formatMac,
  ipv4Broadcast,
  isNetworkAddress,
  parseIp,
  parseMac,
  parsePrefix,
  parsePrefixLength,
} from "../../../guest/agent/network-ip.js";

describe("guest agent: IP and MAC addresses", () => {
  it("parses IPv4 and IPv6 addresses into bytes and prints them canonically", () => {
    assert.deepEqual(parseIp("10.88.0.5"), { family: 4, bytes: Uint8Array.of(10, 88, 0, 5) });
    const cases: [string, string][] = [
      ["fd00:88::5", "fd00:88::5"],
      ["FD00:0088:0000:0000:0000:0000:0000:0005", "fd00:88::5"],
      ["::", "::"],
      ["::1", "::1"],
      ["fe80::", "fe80::"],
      ["1:0:0:2:0:0:0:3", "1:0:0:2::3"],
      ["1:0:0:2:0:0:3:4", "1::2:0:0:3:4"],
      ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"],
      ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"],
      ["::ffff:10.0.0.1", "::ffff:10.0.0.1"],
      ["64:ff9b::192.0.2.33", "64:ff9b::c000:221"],
    ];
    for (const [text, canonical] of cases) {
      const parsed = parseIp(text);
      assert.equal(parsed?.family, 6, text);
      assert.equal(parsed.bytes.length, 16);
      assert.equal(formatIp(parsed.bytes), canonical, text);
    }
    assert.deepEqual(Array.from(parseIp("fd00:88::5")?.bytes ?? []), [0xfd, 0, 0, 0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5]);
    for (const bad of ["", "10.0.0", "10.0.0.256", "010.0.0.1", "fe80::1%eth0", "1::2::3", "10.0.0.1/24", "g::1", " 10.0.0.1"]) {
      assert.equal(parseIp(bad), undefined, bad);
    }
  });

  it("checks prefixes: length in range, no bits past it", () => {
    assert.equal(parsePrefixLength("24", 4), 24);
    assert.equal(parsePrefixLength("128", 6), 128);
    for (const bad of ["33", "-1", "024", "", "255.255.255.0", "1e1"]) assert.equal(parsePrefixLength(bad, 4), undefined, bad);
    const p = parsePrefix("10.96.0.0/12");
    assert.equal(p?.length, 12);
    assert.ok(p && isNetworkAddress(p.address, p.length));
    const host = parsePrefix("10.96.0.1/12");
    assert.ok(host && !isNetworkAddress(host.address, host.length));
    assert.equal(parsePrefix("fd00::1")?.length, 128);
    assert.equal(parsePrefix("fd00::/129"), undefined);
    assert.equal(formatIp(ipv4Broadcast(Uint8Array.of(10, 88, 3, 5), 16)), "10.88.255.255");
    assert.equal(formatIp(ipv4Broadcast(Uint8Array.of(192, 168, 1, 5), 30)), "192.168.1.7");
  });

  it("parses MAC addresses in either case and prints them in lower case", () => {
    const bytes = parseMac("52:54:00:AB:cd:EF");
    assert.ok(bytes);
    assert.equal(formatMac(bytes), "52:54:00:ab:cd:ef");
    for (const bad of ["52:54:00:ab:cd", "52-54-00-ab-cd-ef", "5254.00ab.cdef", "52:54:00:ab:cd:eg", ""]) assert.equal(parseMac(bad), undefined, bad);
  });
});
