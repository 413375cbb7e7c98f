/**
 * An rtnetlink socket through koffi: requests sent, replies read without
 * blocking the event loop (the kernel answers at once; a reply not there yet
 * is waited for with a timer). One socket per batch of changes, closed after.
 * Loaded on first use, so that the agent's start pays nothing for it.
 */
import { constants } from "node:os";
import koffi from "koffi";
import { sleep } from "../../src/common/time.js";
import { ErrnoError } from "./errno.js";
import type { IpFamily } from "./network-ip.js";
import {
  addressDumpRequest,
  addressRequest,
  deleteRouteRequest,
  linkDumpRequest,
  NLMSG_DONE,
  NLMSG_ERROR,
  parseAddress,
  parseError,
  parseLink,
  parseMessages,
  parseRoute,
  replaceRouteRequest,
  routeDumpRequest,
  setLinkRequest,
  type NlMessage,
} from "./network-netlink.js";
import type { AddressChange, AddressInfo, LinkChange, LinkInfo, RouteChange, RouteInfo, Rtnl } from "./network-rtnl.js";

const AF_NETLINK = 16;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_CAP_ACK = 10;
const NETLINK_EXT_ACK = 11;
const MSG_DONTWAIT = 0x40;
/** On a dump's messages: the objects changed while it ran; it is done again. */
const NLM_F_DUMP_INTR = 0x10;
const RECEIVE_BUFFER = 64 * 1024;
const REPLY_WAIT_MS = 2000;
const DUMP_ATTEMPTS = 3;

const lib = koffi.load("libc.so.6");
const c = {
  socket: lib.func("int socket(int domain, int type, int protocol)"),
  setsockopt: lib.func("int setsockopt(int fd, int level, int name, const void *value, uint32_t len)"),
  send: lib.func("intptr_t send(int fd, const void *buf, size_t len, int flags)"),
  recv: lib.func("intptr_t recv(int fd, void *buf, size_t len, int flags)"),
  close: lib.func("int close(int fd)"),
};

/** Opens a socket on the calling process's network namespace. */
export function openRtnl(): Rtnl {
  return new NetlinkRoute();
}

class NetlinkRoute implements Rtnl {
  private readonly fd: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  private readonly buffer = Buffer.alloc(RECEIVE_BUFFER);
  private closed = false;

  constructor() {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE) as number;
    if (fd < 0) throw new ErrnoError("socket(AF_NETLINK)", koffi.errno());
    this.fd = fd;
    // Best effort: errors then carry the kernel's explanation, and echo only the request's header.
    const one = Buffer.alloc(4);
    one.writeInt32LE(1, 0);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, one, 4);
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
  }

  async links(): Promise<LinkInfo[]> {
    return (await this.dump("dump links", linkDumpRequest)).map((m) => parseLink(m.body));
  }

  async addresses(): Promise<AddressInfo[]> {
    return (await this.dump("dump addresses", addressDumpRequest)).flatMap((m) => parseAddress(m.body) ?? []);
  }

  async routes(family: IpFamily): Promise<RouteInfo[]> {
    return (await this.dump(`dump IPv${family} routes`, (seq) => routeDumpRequest(seq, family))).flatMap((m) => parseRoute(m.body) ?? []);
  }

  async setLink(index: number, change: LinkChange): Promise<void> {
    await this.request(`set link ${index}`, (seq) => setLinkRequest(seq, index, change));
  }

  async addAddress(a: AddressChange): Promise<void> {
    await this.request("add address", (seq) => addressRequest(seq, "add", a));
  }

  async deleteAddress(a: AddressChange): Promise<void> {
    await this.request("delete address", (seq) => addressRequest(seq, "delete", a));
  }

  async replaceRoute(r: RouteChange): Promise<void> {
    await this.request("add route", (seq) => replaceRouteRequest(seq, r));
  }

  async deleteRoute(r: RouteInfo): Promise<void> {
    await this.request("delete route", (seq) => deleteRouteRequest(seq, r));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    c.close(this.fd);
  }

  private async dump(call: string, encode: (seq: number) => Buffer): Promise<NlMessage[]> {
    for (let attempt = 1; ; attempt++) {
      const messages = await this.request(call, encode);
      if (!messages.some((m) => (m.flags & NLM_F_DUMP_INTR) !== 0) || attempt === DUMP_ATTEMPTS) return messages;
    }
  }

  /** Sends one request; resolves with the replies before its NLMSG_DONE or acknowledgement. */
  private async request(call: string, encode: (seq: number) => Buffer): Promise<NlMessage[]> {
    if (this.closed) throw new ErrnoError(call, constants.errno.EBADF);
    this.seq = (this.seq + 1) >>> 0;
    const seq = this.seq;
    const message = encode(seq);
    if ((c.send(this.fd, message, message.length, 0) as number) < 0) throw new ErrnoError(call, koffi.errno());
    const replies: NlMessage[] = [];
    const deadline = Date.now() + REPLY_WAIT_MS;
    for (;;) {
      const n = Number(c.recv(this.fd, this.buffer, this.buffer.length, MSG_DONTWAIT));
      if (n < 0) {
        const errno = koffi.errno();
        if (errno === constants.errno.EINTR) continue;
        if (errno !== constants.errno.EAGAIN) throw new ErrnoError(call, errno);
        if (Date.now() >= deadline) throw new ErrnoError(`${call}: no reply from the kernel`, constants.errno.ETIMEDOUT);
        await sleep(1);
        continue;
      }
      for (const m of parseMessages(Buffer.from(this.buffer.subarray(0, n)))) {
        if (m.seq !== seq) continue;
        if (m.type === NLMSG_ERROR) {
          const { errno, message: text } = parseError(m);
          if (errno !== 0) throw new ErrnoError(text === undefined ? call : `${call} (${text})`, errno);
          return replies;
        }
        if (m.type === NLMSG_DONE) {
          const status = m.body.length >= 4 ? m.body.readInt32LE(0) : 0;
          if (status < 0) throw new ErrnoError(call, -status);
          return replies;
        }
        replies.push(m);
      }
    }
  }
}
