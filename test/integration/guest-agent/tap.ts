/**
 * A tap device for the VM network tests, made the way vmpod hands one to
 * QEMU: opened from /dev/net/tun inside a network namespace (the main
 * thread enters it for the two calls, then comes back), its descriptor kept
 * by this process. The tap lives as long as a descriptor on it is open.
 */
import { closeSync, openSync } from "node:fs";
import koffi from "koffi";

const CLONE_NEWNET = 0x40000000;
const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;

const lib = koffi.load("libc.so.6");
const setns = lib.func("int setns(int fd, int nstype)");
const ioctl = lib.func("int ioctl(int fd, unsigned long request, void *arg)");

/** Opens a new tap `name` in the network namespace at `netnsPath`; returns its descriptor. */
export function openTapIn(netnsPath: string, name: string): number {
  if (Buffer.byteLength(name) >= IFNAMSIZ) throw new RangeError(`tap name ${name} is too long`);
  const home = openSync("/proc/thread-self/ns/net", "r");
  const target = openSync(netnsPath, "r");
  let tap: number | undefined;
  try {
    if ((setns(target, CLONE_NEWNET) as number) !== 0) throw new Error(`setns ${netnsPath}: errno ${koffi.errno()}`);
    let failure: unknown;
    try {
      tap = openSync("/dev/net/tun", "r+");
      // struct ifreq: the name, then the flags (a short) in the union.
      const ifreq = Buffer.alloc(40);
      ifreq.write(name, 0);
      ifreq.writeUInt16LE(IFF_TAP | IFF_NO_PI, IFNAMSIZ);
      if ((ioctl(tap, TUNSETIFF, ifreq) as number) !== 0) throw new Error(`TUNSETIFF ${name}: errno ${koffi.errno()}`);
    } catch (err) {
      failure = err;
    }
    // Back home before anything else runs on this thread.
    if ((setns(home, CLONE_NEWNET) as number) !== 0) throw new Error(`setns back: errno ${koffi.errno()}`);
    if (failure !== undefined || tap === undefined) throw failure;
    const fd = tap;
    tap = undefined;
    return fd;
  } finally {
    if (tap !== undefined) closeSync(tap);
    closeSync(target);
    closeSync(home);
  }
}
