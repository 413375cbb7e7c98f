import assert from "node:assert/strict";
import {
  addressRequest,
  deleteRouteRequest,
  encodeMessage,
  IFF_UP,
  linkDumpRequest,
  NLM_F_ACK,
  NLM_F_CREATE,
  NLM_F_REPLACE,
  NLM_F_REQUEST,
  NLMSG_ERROR,
  parseAddress,
  parseError,
  parseLink,
  parseMessages,
  parseRoute,
  replaceRouteRequest,
  RTM_DELROUTE,
  RTM_NEWADDR,
  RTM_NEWLINK,
  RTM_NEWROUTE,
  RTNH_F_ONLINK,
  RTPROT_BOOT,
  setLinkRequest,
} from "../../../guest/agent/network-netlink.js";
import { formatIp } from "../../../guest/agent/network-ip.js";

const v4 = (...b: number[]) => Uint8Array.from(b);

function attr(type: number, value: Buffer): Buffer {
  const out = Buffer.alloc((4 + value.length + 3) & ~3);
  out.writeUInt16LE(4 + value.length, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
}

describe("guest agent: rtnetlink messages", () => {
  it("encodes a link change: header, ifinfomsg, name and MTU attributes", () => {
    const msg = setLinkRequest(7, 3, { name: "eth0", mtu: 1450, up: true });
    // prettier-ignore
    assert.deepEqual([...msg], [
      52, 0, 0, 0, RTM_NEWLINK, 0, NLM_F_REQUEST | NLM_F_ACK, 0, 7, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 0, 3, 0, 0, 0, IFF_UP, 0, 0, 0, IFF_UP, 0, 0, 0,
      9, 0, 3, 0, ...Buffer.from("eth0\0"), 0, 0, 0,
      8, 0, 4, 0, 0xaa, 0x05, 0, 0,
    ]);
    const down = setLinkRequest(8, 3, { up: false });
    assert.equal(down.readUInt32LE(24), 0, "flags");
    assert.equal(down.readUInt32LE(28), IFF_UP, "change mask");
    assert.equal(setLinkRequest(9, 3, { mtu: 1500 }).readUInt32LE(28), 0, "flags untouched");
  });

  it("encodes addresses and reads them back as a dump would give them", () => {
    const add = addressRequest(1, "add", { index: 2, family: 4, address: v4(10, 88, 0, 5), prefixLength: 16, broadcast: v4(10, 88, 255, 255) });
    const [m] = parseMessages(add);
    assert.equal(m?.type, RTM_NEWADDR);
    assert.equal(m.flags, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE);
    const parsed = parseAddress(m.body);
    assert.equal(parsed && formatIp(parsed.address), "10.88.0.5");
    assert.equal(parsed?.prefixLength, 16);
    assert.equal(parsed.index, 2);
    const v6 = addressRequest(2, "add", { index: 2, family: 6, address: new Uint8Array(16).fill(1), prefixLength: 64, noDad: true });
    const p6 = parseAddress(parseMessages(v6)[0]!.body);
    assert.equal(p6?.family, 6);
    assert.equal(p6.flags & 0x2, 0x2, "IFA_F_NODAD");
  });

  it("encodes routes to replace and to delete", () => {
    const add = replaceRouteRequest(5, { family: 4, dstLength: 0, gateway: v4(10, 88, 0, 1), oif: 2, scope: 0, onLink: true });
    const [m] = parseMessages(add);
    assert.equal(m?.type, RTM_NEWROUTE);
    const r = parseRoute(m.body);
    assert.ok(r?.gateway);
    assert.deepEqual({ ...r, gateway: formatIp(r.gateway) }, {
      family: 4,
      dstLength: 0,
      tos: 0,
      table: 254,
      protocol: RTPROT_BOOT,
      scope: 0,
      type: 1,
      flags: RTNH_F_ONLINK,
      gateway: "10.88.0.1",
      oif: 2,
    });
    const del = parseMessages(deleteRouteRequest(6, { ...r, dst: v4(10, 0, 0, 0), dstLength: 8, priority: 100 }))[0];
    assert.equal(del?.type, RTM_DELROUTE);
    const back = parseRoute(del.body);
    assert.equal(back?.priority, 100);
    assert.equal(back.scope, 255, "any scope matches");
    assert.equal(back.dst && formatIp(back.dst), "10.0.0.0");
  });

  it("parses a link message", () => {
    const head = Buffer.alloc(16);
    head.writeInt32LE(4, 4);
    head.writeUInt32LE(0x1043, 8);
    const mtu = Buffer.alloc(4);
    mtu.writeUInt32LE(1400, 0);
    const body = Buffer.concat([head, attr(3, Buffer.from("eth0\0")), attr(1, Buffer.from([0x52, 0x54, 0, 0x12, 0x34, 0x56])), attr(4, mtu)]);
    const link = parseLink(parseMessages(encodeMessage(RTM_NEWLINK, 2, 1, body))[0]!.body);
    assert.deepEqual({ ...link, mac: [...link.mac] }, { index: 4, flags: 0x1043, name: "eth0", mtu: 1400, mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56] });
  });

  it("splits datagrams, and refuses a truncated one", () => {
    const two = Buffer.concat([linkDumpRequest(1), linkDumpRequest(2)]);
    assert.deepEqual(
      parseMessages(two).map((m) => m.seq),
      [1, 2],
    );
    assert.throws(() => parseMessages(two.subarray(0, two.length - 4)), RangeError);
  });

  it("reads errors: the errno, and the kernel's extended-ack text", () => {
    const echoed = linkDumpRequest(9).subarray(0, 16);
    const errBody = (errno: number, tail: Buffer) => {
      const code = Buffer.alloc(4);
      code.writeInt32LE(-errno, 0);
      return Buffer.concat([code, echoed, tail]);
    };
    const plain = parseMessages(encodeMessage(NLMSG_ERROR, 0x100, 9, errBody(101, Buffer.alloc(0))))[0]!;
    assert.deepEqual(parseError(plain), { errno: 101 });
    const withText = parseMessages(encodeMessage(NLMSG_ERROR, 0x100 | 0x200, 9, errBody(101, attr(1, Buffer.from("Nexthop has invalid gateway\0")))))[0]!;
    assert.deepEqual(parseError(withText), { errno: 101, message: "Nexthop has invalid gateway" });
    const ack = parseMessages(encodeMessage(NLMSG_ERROR, 0x100, 9, errBody(0, Buffer.alloc(0))))[0]!;
    assert.equal(parseError(ack).errno, 0);
  });
});
