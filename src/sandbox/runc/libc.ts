/**
 * The libc calls the runc handler needs and Node does not offer, through
 * koffi: a pseudoterminal pair for exec with a terminal, its window size,
 * and punching the consumed head out of a container's output file.
 * Loaded on first use, so a daemon without runc pods never loads the
 * native module.
 */
import { openSync, constants as fsConstants } from "node:fs";
import koffi from "koffi";
import { VmpodError } from "../../common/errors.js";

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_CLOEXEC = 0o2000000;
const O_NONBLOCK = 0o4000;
const F_DUPFD_CLOEXEC = 1030;
const F_GETFL = 3;
const F_SETFL = 4;
const TIOCSWINSZ = 0x5414;
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;

type Fn = ReturnType<koffi.IKoffiLib["func"]>;

interface Calls {
  posixOpenpt: Fn;
  grantpt: Fn;
  unlockpt: Fn;
  ptsnameR: Fn;
  fcntl: Fn;
  ioctl: Fn;
  fallocate: Fn;
  close: Fn;
}

let calls: Calls | undefined;

function libc(): Calls {
  if (calls) return calls;
  const lib = koffi.load("libc.so.6");
  calls = {
    posixOpenpt: lib.func("int posix_openpt(int flags)"),
    grantpt: lib.func("int grantpt(int fd)"),
    unlockpt: lib.func("int unlockpt(int fd)"),
    ptsnameR: lib.func("int ptsname_r(int fd, _Out_ char *buf, size_t len)"),
    fcntl: lib.func("int fcntl(int fd, int cmd, long arg)"),
    ioctl: lib.func("int ioctl(int fd, unsigned long request, void *arg)"),
    fallocate: lib.func("int fallocate(int fd, int mode, int64_t offset, int64_t len)"),
    close: lib.func("int close(int fd)"),
  };
  return calls;
}

function check(call: string, result: number): number {
  if (result < 0) throw new VmpodError("Internal", `${call}: errno ${koffi.errno()}`);
  return result;
}

/**
 * A new pseudoterminal: its master (non-blocking, close-on-exec) and its
 * slave (close-on-exec, not this process's controlling terminal).
 */
export function openPty(): { master: number; slave: number } {
  const c = libc();
  const master = check("posix_openpt", c.posixOpenpt(O_RDWR | O_NOCTTY | O_CLOEXEC) as number);
  try {
    check("grantpt", c.grantpt(master) as number);
    check("unlockpt", c.unlockpt(master) as number);
    const name = Buffer.alloc(128);
    const r = c.ptsnameR(master, name, name.length) as number;
    if (r !== 0) throw new VmpodError("Internal", `ptsname_r: errno ${r}`);
    const slavePath = name.toString("latin1", 0, name.indexOf(0));
    const slave = openSync(slavePath, fsConstants.O_RDWR | O_NOCTTY | O_CLOEXEC);
    const flags = check("fcntl(F_GETFL)", c.fcntl(master, F_GETFL, 0) as number);
    check("fcntl(F_SETFL)", c.fcntl(master, F_SETFL, flags | O_NONBLOCK) as number);
    return { master, slave };
  } catch (err) {
    c.close(master);
    throw err;
  }
}

/** A close-on-exec duplicate of `fd`, sharing its open file description. */
export function dupCloexec(fd: number): number {
  return check("fcntl(F_DUPFD_CLOEXEC)", libc().fcntl(fd, F_DUPFD_CLOEXEC, 0) as number);
}

/** Sets a terminal's window size (TIOCSWINSZ). */
export function setWindowSize(fd: number, rows: number, columns: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(columns, 2);
  check("ioctl(TIOCSWINSZ)", libc().ioctl(fd, TIOCSWINSZ, ws) as number);
}

/** Frees the blocks of `[0, length)` of a file, keeping its size (the range then reads as zeros). */
export function punchHole(fd: number, length: number): void {
  if (length <= 0) return;
  check("fallocate(PUNCH_HOLE)", libc().fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, length) as number);
}
