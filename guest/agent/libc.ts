/**
 * The few libc calls Node does not offer, through koffi. Loaded lazily (the
 * first container or sandbox call), so the agent answers its first health
 * check without paying for the native module.
 *
 * Every call reports failure as an ErrnoError carrying the errno's name, so
 * callers can tell EAGAIN or ECHILD from real failures without parsing text.
 */
import { constants } from "node:os";
import koffi from "koffi";
import { ErrnoError } from "./errno.js";

const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_DUPFD_CLOEXEC = 1030;
const F_GETFL = 3;
const F_SETFL = 4;
const PR_SET_CHILD_SUBREAPER = 36;
const WNOHANG = 1;
const TIOCSWINSZ = 0x5414;
const RNDADDENTROPY = 0x40085203;
/** _IO('R', 0x07): reseed the kernel's CRNG from its input pool now. */
const RNDRESEEDCRNG = 0x5207;
const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const CLOCK_REALTIME = 0;
const SUN_PATH_MAX = 108;

const lib = koffi.load("libc.so.6");
const iovec = koffi.struct("vmpod_iovec", { base: "void *", len: "size_t" });
const msghdr = koffi.struct("vmpod_msghdr", {
  name: "void *",
  namelen: "uint32_t",
  iov: koffi.pointer(iovec),
  iovlen: "size_t",
  control: "void *",
  controllen: "size_t",
  flags: "int",
});

const c = {
  prctl: lib.func("int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)"),
  waitpid: lib.func("int waitpid(int pid, _Out_ int *status, int options)"),
  pipe2: lib.func("int pipe2(int *fds, int flags)"),
  fcntl: lib.func("int fcntl(int fd, int cmd, long arg)"),
  ioctl: lib.func("int ioctl(int fd, unsigned long request, void *arg)"),
  close: lib.func("int close(int fd)"),
  socket: lib.func("int socket(int domain, int type, int protocol)"),
  bind: lib.func("int bind(int fd, const void *addr, uint32_t len)"),
  listen: lib.func("int listen(int fd, int backlog)"),
  accept4: lib.func("int accept4(int fd, void *addr, void *len, int flags)"),
  recvmsg: lib.func("recvmsg", "intptr_t", ["int", koffi.inout(koffi.pointer(msghdr)), "int"]),
  sethostname: lib.func("int sethostname(const char *name, size_t len)"),
  mount: lib.func("int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)"),
  umount2: lib.func("int umount2(const char *target, int flags)"),
  clockSettime: lib.func("int clock_settime(int clock, const void *tp)"),
};

function check(call: string, result: number): number {
  if (result < 0) throw new ErrnoError(call, koffi.errno());
  return result;
}

/** Makes orphaned descendants re-parent to this process instead of init. */
export function setChildSubreaper(): void {
  check("prctl(PR_SET_CHILD_SUBREAPER)", c.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) as number);
}

/** waitpid(pid, WNOHANG): the raw wait status once `pid` has exited, undefined while it runs. */
export function waitpidNoHang(pid: number): number | undefined {
  const status = [0];
  const r = check("waitpid", c.waitpid(pid, status, WNOHANG) as number);
  return r === 0 ? undefined : (status[0] ?? 0);
}

/** A pipe whose both ends are close-on-exec: [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check("pipe2", c.pipe2(fds, O_CLOEXEC) as number);
  return [fds[0] as number, fds[1] as number];
}

/** A close-on-exec duplicate of `fd`, sharing its open file description. */
export function dupCloexec(fd: number): number {
  return check("fcntl(F_DUPFD_CLOEXEC)", c.fcntl(fd, F_DUPFD_CLOEXEC, 0) as number);
}

export function setNonblocking(fd: number): void {
  const flags = check("fcntl(F_GETFL)", c.fcntl(fd, F_GETFL, 0) as number);
  check("fcntl(F_SETFL)", c.fcntl(fd, F_SETFL, flags | O_NONBLOCK) as number);
}

export function closeFd(fd: number): void {
  check("close", c.close(fd) as number);
}

/** Sets a terminal's window size (TIOCSWINSZ); its foreground process group gets SIGWINCH. */
export function setWindowSize(fd: number, rows: number, columns: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(columns, 2);
  check("ioctl(TIOCSWINSZ)", c.ioctl(fd, TIOCSWINSZ, ws) as number);
}

/** A listening, non-blocking, close-on-exec unix stream socket bound to `path`. */
export function listenUnix(path: string): number {
  const encoded = Buffer.from(path);
  if (encoded.length >= SUN_PATH_MAX) throw new ErrnoError(`bind ${path}`, constants.errno.ENAMETOOLONG);
  const addr = Buffer.alloc(2 + SUN_PATH_MAX);
  addr.writeUInt16LE(AF_UNIX, 0);
  encoded.copy(addr, 2);
  const fd = check("socket", c.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number);
  try {
    check(`bind ${path}`, c.bind(fd, addr, 2 + encoded.length + 1) as number);
    check("listen", c.listen(fd, 4) as number);
  } catch (err) {
    c.close(fd);
    throw err;
  }
  return fd;
}

/** accept4 on a non-blocking listener: the connection, or undefined if none is pending. */
export function acceptNonblocking(fd: number): number | undefined {
  const r = c.accept4(fd, null, null, SOCK_CLOEXEC) as number;
  if (r >= 0) return r;
  const errno = koffi.errno();
  if (errno === constants.errno.EAGAIN) return undefined;
  throw new ErrnoError("accept4", errno);
}

/**
 * Receives one file descriptor passed with SCM_RIGHTS on `fd` (close-on-exec
 * on arrival); undefined if the message carried none.
 */
export function receiveFd(fd: number): number | undefined {
  const data = Buffer.alloc(256);
  const control = Buffer.alloc(64);
  const msg = { name: null, namelen: 0, iov: [{ base: data, len: data.length }], iovlen: 1, control, controllen: control.length, flags: 0 };
  check("recvmsg", Number(c.recvmsg(fd, msg, MSG_CMSG_CLOEXEC)));
  // struct cmsghdr { size_t len; int level; int type; unsigned char data[]; }
  if (msg.controllen < 20) return undefined;
  const len = Number(control.readBigUInt64LE(0));
  if (control.readInt32LE(8) !== SOL_SOCKET || control.readInt32LE(12) !== SCM_RIGHTS || len < 20) return undefined;
  const received = control.readInt32LE(16);
  // Close any extra descriptors so none leak.
  for (let off = 20; off + 4 <= Math.min(len, msg.controllen); off += 4) c.close(control.readInt32LE(off));
  return received;
}

export function setHostname(name: string): void {
  const encoded = Buffer.from(name);
  check("sethostname", c.sethostname(encoded, encoded.length) as number);
}

export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  check(`mount ${target}`, c.mount(source, target, fstype, flags, data === "" ? null : data) as number);
}

export const MNT_DETACH = 2;

export function umount(target: string, flags = 0): void {
  check(`umount ${target}`, c.umount2(target, flags) as number);
}

export function setRealtimeClock(sec: bigint, nsec: number): void {
  const ts = Buffer.alloc(16);
  ts.writeBigInt64LE(sec, 0);
  ts.writeBigInt64LE(BigInt(nsec), 8);
  check("clock_settime", c.clockSettime(CLOCK_REALTIME, ts) as number);
}

/** RNDADDENTROPY on an open /dev/(u)random: mixes `data` in and credits 8 bits a byte. */
export function addEntropy(fd: number, data: Uint8Array): void {
  // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
  const info = Buffer.alloc(8 + data.length);
  info.writeInt32LE(data.length * 8, 0);
  info.writeInt32LE(data.length, 4);
  info.set(data, 8);
  check("ioctl(RNDADDENTROPY)", c.ioctl(fd, RNDADDENTROPY, info) as number);
}

/**
 * RNDRESEEDCRNG on an open /dev/(u)random: the kernel's CRNG takes a new key
 * from its input pool at once. Entropy added alone reaches the CRNG only at
 * its next scheduled reseed, which early in a guest's uptime can be seconds
 * away: VMs restored from one saved machine would read the same bytes until then.
 */
export function reseedCrng(fd: number): void {
  check("ioctl(RNDRESEEDCRNG)", c.ioctl(fd, RNDRESEEDCRNG, null) as number);
}
