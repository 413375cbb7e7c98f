/**
 * Frames through a VM's tap descriptor without a VM: an ARP request for the
 * pod's gateway written where QEMU would write the guest's frames, and the
 * gateway's reply read back where QEMU would read them. The descriptor
 * carries a 10-byte virtio-net header before each frame (IFF_VNET_HDR).
 */
import { readSync, writeSync } from "node:fs";
import koffi from "koffi";

const VNET_HDR = 10;
const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;

let fcntl: ReturnType<koffi.IKoffiLib["func"]> | undefined;

function setNonBlocking(fd: number): void {
  fcntl ??= koffi.load("libc.so.6").func("int fcntl(int fd, int cmd, long arg)");
  const flags = fcntl(fd, F_GETFL, 0) as number;
  if (flags < 0 || (fcntl(fd, F_SETFL, flags | O_NONBLOCK) as number) < 0) throw new Error(`fcntl: errno ${koffi.errno()}`);
}

const macBytes = (mac: string) => Buffer.from(mac.split(":").map((h) => parseInt(h, 16)));
const ipBytes = (ip: string) => Buffer.from(ip.split(".").map(Number));

function arpRequest(mac: string, ip: string, target: string): Buffer {
  const frame = Buffer.alloc(VNET_HDR + 42);
  let o = VNET_HDR;
  frame.fill(0xff, o, o + 6); // broadcast
  macBytes(mac).copy(frame, o + 6);
  frame.writeUInt16BE(0x0806, o + 12);
  o += 14;
  frame.writeUInt16BE(1, o); // Ethernet
  frame.writeUInt16BE(0x0800, o + 2); // IPv4
  frame[o + 4] = 6;
  frame[o + 5] = 4;
  frame.writeUInt16BE(1, o + 6); // request
  macBytes(mac).copy(frame, o + 8);
  ipBytes(ip).copy(frame, o + 14);
  ipBytes(target).copy(frame, o + 24);
  return frame;
}

/**
 * Asks for `gateway`'s hardware address from `mac`/`ip` through `fd` and
 * returns the address in the reply, or undefined if none came within `ms`.
 */
export async function arpThrough(fd: number, mac: string, ip: string, gateway: string, ms = 5000): Promise<string | undefined> {
  setNonBlocking(fd);
  const buf = Buffer.alloc(65536);
  const deadline = Date.now() + ms;
  let nextSend = 0;
  while (Date.now() < deadline) {
    if (Date.now() >= nextSend) {
      writeSync(fd, arpRequest(mac, ip, gateway));
      nextSend = Date.now() + 500;
    }
    let n = 0;
    try {
      n = readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EAGAIN") throw err;
    }
    if (n === 0) {
      await new Promise((r) => setTimeout(r, 20));
      continue;
    }
    const f = buf.subarray(VNET_HDR, n);
    if (f.length < 42 || f.readUInt16BE(12) !== 0x0806 || f.readUInt16BE(20) !== 2) continue;
    const senderIp = [...f.subarray(28, 32)].join(".");
    const targetMac = [...f.subarray(32, 38)].map((b) => b.toString(16).padStart(2, "0")).join(":");
    if (senderIp === gateway && targetMac === mac) return [...f.subarray(22, 28)].map((b) => b.toString(16).padStart(2, "0")).join(":");
  }
  return undefined;
}
