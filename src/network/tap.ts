/**
 * The VM's tap, opened by file descriptor from the daemon so that QEMU
 * needn't run inside the pod's netns: /dev/net/tun is opened with the
 * thread in the netns (the device is made in the netns of the file), then
 * named with TUNSETIFF. The tap is not persistent: it goes away with the
 * last descriptor (QEMU's), so a dead VM cannot leak it.
 */
import { closeSync, constants as fsConstants, openSync } from "node:fs";
import { VmpodError } from "../common/errors.js";
import { inNetns, ioctlBuffer } from "./ns-calls.js";

/** The tap's name inside every pod's netns. */
export const TAP_NAME = "tap0_vmpod";

const TUNSETIFF = 0x400454ca;
const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;
/** sizeof(struct ifreq) */
const IFREQ_SIZE = 40;

/**
 * Opens a new tap `name` (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR) in the netns at
 * `netnsPath`. Returns its close-on-exec descriptor, which the caller owns.
 */
export function openTap(netnsPath: string, name: string = TAP_NAME): number {
  const ifr = ifreq(name, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR);
  return inNetns(netnsPath, () => {
    const fd = openTun();
    try {
      ioctlBuffer(fd, TUNSETIFF, ifr, `TUNSETIFF ${name}`);
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    return fd;
  });
}

function openTun(): number {
  try {
    return openSync("/dev/net/tun", fsConstants.O_RDWR);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === "ENOENT";
    throw new VmpodError(missing ? "FailedPrecondition" : "Internal", missing ? "no /dev/net/tun (load the tun module)" : "open /dev/net/tun", { cause: err });
  }
}

/** A struct ifreq with the name and flags set. */
export function ifreq(name: string, flags: number): Buffer {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || Buffer.byteLength(name) >= IFNAMSIZ) {
    throw new VmpodError("InvalidArgument", `${JSON.stringify(name)} is not an interface name (at most ${IFNAMSIZ - 1} characters)`);
  }
  const buf = Buffer.alloc(IFREQ_SIZE);
  buf.write(name, 0, "latin1");
  buf.writeUInt16LE(flags, IFNAMSIZ);
  return buf;
}
