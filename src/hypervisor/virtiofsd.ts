/**
 * virtiofsd, the vhost-user daemon behind a virtio-fs share (the C one
 * Debian ships with QEMU 7.2). It listens on its socket before QEMU starts,
 * serves one QEMU, and exits when that QEMU goes away.
 */
import { readFile, rm, stat } from "node:fs/promises";
import { VmpodError, wrap } from "../common/errors.js";
import { sleep } from "../common/time.js";
import { describeExit, SupervisedProcess, type VmProcess } from "./process.js";
import type { VirtioFsCache } from "./spec.js";

export interface VirtiofsdOptions {
  readonly daemonPath: string;
  readonly socketPath: string;
  readonly sourceDir: string;
  readonly cache: VirtioFsCache;
  readonly threadPoolSize?: number;
}

export interface VirtiofsdStartOptions {
  readonly signal?: AbortSignal;
  /** Milliseconds for the socket to appear; 10 s unless said otherwise. */
  readonly timeoutMs?: number;
}

const DEFAULT_START_TIMEOUT_MS = 10_000;
const POLL_MS = 10;
/** How long virtiofsd gets to exit on SIGTERM. */
export const VIRTIOFSD_STOP_TIMEOUT_MS = 2_000;

/**
 * The daemon's arguments: its socket, the shared tree, the cache mode, a
 * namespace sandbox (pivot_root into the shared tree), and submounts
 * announced to the guest (as Kata does).
 */
export function virtiofsdArgs(options: VirtiofsdOptions): string[] {
  const args = [
    `--socket-path=${options.socketPath}`,
    "-o",
    `source=${options.sourceDir}`,
    "-o",
    `cache=${options.cache}`,
    "-o",
    "sandbox=namespace",
    "-o",
    "announce_submounts",
  ];
  if (options.threadPoolSize !== undefined) args.push(`--thread-pool-size=${options.threadPoolSize}`);
  return args;
}

/**
 * Starts virtiofsd and waits for its socket. When it exits first, the error
 * carries its stderr; on timeout or abort it is killed before throwing.
 */
export async function startVirtiofsd(options: VirtiofsdOptions, start: VirtiofsdStartOptions = {}): Promise<SupervisedProcess> {
  await rm(options.socketPath, { force: true });
  // stderr to a file: the daemon outlives vmpod when its VM does.
  const proc = await SupervisedProcess.spawn({ name: "virtiofsd", path: options.daemonPath, args: virtiofsdArgs(options), stderrPath: `${options.socketPath}.stderr` });
  try {
    await waitForSocket(proc, options.socketPath, start.timeoutMs ?? DEFAULT_START_TIMEOUT_MS, start.signal);
  } catch (err) {
    await stopVirtiofsd(proc, options.socketPath).catch(() => {});
    throw err;
  }
  return proc;
}

/** Stops virtiofsd (SIGTERM, then SIGKILL) and removes its socket. Idempotent. */
export async function stopVirtiofsd(proc: VmProcess, socketPath: string): Promise<void> {
  try {
    await proc.stop(VIRTIOFSD_STOP_TIMEOUT_MS);
  } finally {
    await rm(socketPath, { force: true });
    await rm(`${socketPath}.stderr`, { force: true });
  }
}

async function waitForSocket(proc: VmProcess, path: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await isListening(path)) return;
    const status = proc.exitStatus;
    if (status) {
      throw new VmpodError("Internal", `virtiofsd ${describeExit(status)}${suffix(proc.stderr())}`);
    }
    if (performance.now() > deadline) {
      throw new VmpodError("DeadlineExceeded", `virtiofsd did not create ${path} within ${timeoutMs} ms${suffix(proc.stderr())}`);
    }
    try {
      await sleep(POLL_MS, signal);
    } catch (err) {
      throw wrap("wait for virtiofsd", err, "Canceled");
    }
  }
}

function suffix(stderr: string): string {
  return stderr === "" ? "" : `: ${stderr}`;
}

/** The flag of a listening socket in /proc/net/unix (__SO_ACCEPTCON). */
const ACCEPTING = 0x10000;

/**
 * True once a socket is listening at `path`. The socket file exists a moment
 * before virtiofsd listens on it, and QEMU connecting in between is refused;
 * /proc/net/unix says which sockets listen (in this process's network
 * namespace, which virtiofsd shares). Where it cannot be read, the file
 * being a socket has to do.
 */
export async function isListening(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isSocket()) return false;
  } catch {
    return false;
  }
  let table: string;
  try {
    table = await readFile("/proc/net/unix", "utf8");
  } catch {
    return true;
  }
  // Num RefCount Protocol Flags Type St Inode Path
  for (const line of table.split("\n")) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 8 && fields.slice(7).join(" ") === path && (Number.parseInt(fields[3] ?? "0", 16) & ACCEPTING) !== 0) return true;
  }
  return false;
}
