/**
 * The libc calls the network layer needs and Node does not offer, through
 * koffi: moving the calling thread into a pod's netns for one synchronous
 * step (opening a tap's file there) and back, and the ioctl that names a tap.
 * Loaded on first use.
 */
import { closeSync, openSync } from "node:fs";
import koffi from "koffi";
import { VmpodError } from "../common/errors.js";

const CLONE_NEWNET = 0x40000000;
const EBUSY = 16;

type Fn = ReturnType<koffi.IKoffiLib["func"]>;

interface Calls {
  setns: Fn;
  ioctl: Fn;
}

let calls: Calls | undefined;

function libc(): Calls {
  if (calls) return calls;
  const lib = koffi.load("libc.so.6");
  calls = {
    setns: lib.func("int setns(int fd, int nstype)"),
    ioctl: lib.func("int ioctl(int fd, unsigned long request, void *arg)"),
  };
  return calls;
}

/**
 * Runs `step` with the calling thread in the netns at `netnsPath`, then moves
 * the thread back, whatever happened. `step` must be synchronous: nothing
 * else may run on this thread while it is elsewhere. Files and sockets opened
 * by `step` keep the netns they were opened in.
 */
export function inNetns<T>(netnsPath: string, step: () => T): T {
  const c = libc();
  const home = openSync("/proc/thread-self/ns/net", "r");
  try {
    const target = openNetns(netnsPath);
    try {
      if ((c.setns(target, CLONE_NEWNET) as number) !== 0) throw new VmpodError("Internal", `setns into ${netnsPath}: errno ${koffi.errno()}`);
    } finally {
      closeSync(target);
    }
    let outcome: { value: T } | { error: unknown };
    try {
      outcome = { value: step() };
    } catch (error) {
      outcome = { error };
    }
    if ((c.setns(home, CLONE_NEWNET) as number) !== 0) {
      // The thread would run the rest of the daemon in the pod's netns.
      throw new VmpodError("Internal", `setns back from ${netnsPath}: errno ${koffi.errno()}; the daemon must restart`);
    }
    if ("error" in outcome) throw outcome.error;
    return outcome.value;
  } finally {
    closeSync(home);
  }
}

function openNetns(path: string): number {
  try {
    return openSync(path, "r");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new VmpodError("NotFound", `network namespace ${path} does not exist`, { cause: err });
    throw new VmpodError("Internal", `open ${path}`, { cause: err });
  }
}

/** ioctl(fd, request, buffer); errors carry errno and `what`. */
export function ioctlBuffer(fd: number, request: number, arg: Buffer, what: string): void {
  if ((libc().ioctl(fd, request, arg) as number) < 0) {
    const errno = koffi.errno();
    if (errno === EBUSY) throw new VmpodError("AlreadyExists", `${what}: in use by another descriptor (EBUSY)`);
    throw new VmpodError("Internal", `${what}: errno ${errno}`);
  }
}
