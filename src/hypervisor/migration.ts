/**
 * A VM's state saved to a file and loaded back, over QMP: what VM templates
 * are made of. QEMU 7.2 has no `file:` migration URI, so the stream goes
 * through `exec:` to `cat`, which QEMU runs with /bin/sh. The source is
 * paused first, so the state is written in one pass; the destination is a
 * QEMU started with `-incoming defer` and `-S`, left paused once loaded.
 * With `ignoreShared` (both ends), RAM shared with the host through a file
 * is left out of the stream (`x-ignore-shared`): the state is the devices'
 * alone, and the destination maps the memory the source left in its file.
 */
import { VmpodError, invalidArgument } from "../common/errors.js";
import { sleep } from "../common/time.js";
import type { QmpCallOptions, QmpClient } from "./qmp.js";

export interface MigrationOptions {
  /** Milliseconds the whole save or load may take. */
  readonly timeoutMs: number;
  readonly signal?: AbortSignal;
  /** Leave file-backed shared RAM out of the stream; the same on save and on load. */
  readonly ignoreShared?: boolean;
}

const POLL_MS = 10;
/** Bytes a second: as fast as the disk takes it (QEMU's default is 32 MiB/s). */
const UNLIMITED_BANDWIDTH = 2 ** 40;

/** The `exec:` command line that writes to or reads from `file`, which must need no quoting beyond single quotes. */
function shellPath(file: string): string {
  if (!/^\/[A-Za-z0-9._/+-]+$/.test(file)) throw invalidArgument(`migration file ${JSON.stringify(file)} must be an absolute path of [A-Za-z0-9._/+-]`);
  return `'${file}'`;
}

/** Pauses the VM and writes its whole state to `file`; the VM stays paused. */
export async function saveState(qmp: QmpClient, file: string, options: MigrationOptions): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  const call = callOptions(options);
  await qmp.stop(call);
  await qmp.migrateSetParameters({ "max-bandwidth": UNLIMITED_BANDWIDTH }, call);
  if (options.ignoreShared) await ignoreSharedRam(qmp, call);
  await qmp.migrate(`exec:cat > ${shellPath(file)}`, call);
  for (;;) {
    const info = await qmp.queryMigrate(call);
    if (info.status === "completed") return;
    if (info.status === "failed" || info.status === "cancelled") {
      throw new VmpodError("Internal", `save vm state to ${file}: migration ${info.status}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`);
    }
    await pause(deadline, options, `save vm state to ${file}`);
  }
}

/**
 * Loads the state in `file` into a QEMU waiting with `-incoming defer`.
 * QEMU exits when the state does not load (a corrupt or foreign file): the
 * caller sees its QMP connection close.
 */
export async function loadState(qmp: QmpClient, file: string, options: MigrationOptions): Promise<void> {
  const deadline = performance.now() + options.timeoutMs;
  const call = callOptions(options);
  if (options.ignoreShared) await ignoreSharedRam(qmp, call);
  await qmp.migrateIncoming(`exec:cat ${shellPath(file)}`, call);
  for (;;) {
    const { status } = await qmp.queryStatus(call);
    if (status !== "inmigrate") {
      if (status === "paused" || status === "running") return;
      throw new VmpodError("Internal", `load vm state from ${file}: the vm is ${status}`);
    }
    await pause(deadline, options, `load vm state from ${file}`);
  }
}

async function ignoreSharedRam(qmp: QmpClient, call: QmpCallOptions): Promise<void> {
  await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] }, call);
}

function callOptions(options: MigrationOptions): QmpCallOptions {
  return { timeoutMs: options.timeoutMs, ...(options.signal ? { signal: options.signal } : {}) };
}

async function pause(deadline: number, options: MigrationOptions, what: string): Promise<void> {
  if (performance.now() > deadline) throw new VmpodError("DeadlineExceeded", `${what}: not done within ${options.timeoutMs} ms`);
  await sleep(POLL_MS, options.signal);
}
