/**
 * QemuHypervisor: the Hypervisor over QEMU, putting together the
 * command-line builder (qemu-args.ts), the process supervisor (process.ts),
 * the QMP client (qmp.ts), virtiofsd (virtiofsd.ts), and the devices added
 * while the VM runs (hotplug.ts for virtio-fs, block-hotplug.ts for disks).
 * A VM whose RAM is a copy of a file (a template's memory) gets the copy
 * at prepare.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { VmpodError, failedPrecondition, kindOf, messageOf, wrap } from "../common/errors.js";
import { Rollback } from "../common/rollback.js";
import { sleep } from "../common/time.js";
import { BlockHotplug } from "./block-hotplug.js";
import type { AttachedDevice, CallOptions, HotplugDevice, Hypervisor, StopOptions, VmExit, VmHandle } from "./hypervisor.js";
import { VirtioFsHotplug } from "./hotplug.js";
import { checkSpecFiles } from "./preflight.js";
import { AdoptedProcess, processRef, type ProcessRef } from "./adopted-process.js";
import { describeExit, SupervisedProcess, type VmProcess } from "./process.js";
import { buildQemuArgs, nicDeviceId, nicPorts, passedFds } from "./qemu-args.js";
import { GuestRam } from "./guest-ram.js";
import { loadState, saveState } from "./migration.js";
import { QmpClient } from "./qmp.js";
import { validateSpec, type VmSpec } from "./spec.js";
import { readTail } from "./tail.js";
import { startVirtiofsd, stopVirtiofsd } from "./virtiofsd.js";

export interface QemuHypervisorOptions {
  /** Milliseconds from launch for QMP to answer; 30 s unless said otherwise. */
  readonly startTimeoutMs?: number;
  /** Milliseconds `stop` gives QEMU to quit before killing it; 5 s unless said otherwise. */
  readonly stopTimeoutMs?: number;
  /** Milliseconds `removeDevice` waits for the guest to let a device go; 10 s unless said otherwise. */
  readonly unplugTimeoutMs?: number;
}

const DEFAULT_START_TIMEOUT_MS = 30_000;
const DEFAULT_STOP_TIMEOUT_MS = 5_000;
const DEFAULT_UNPLUG_TIMEOUT_MS = 10_000;
/** How much of the console log an error about a failed boot quotes. */
const CONSOLE_TAIL_BYTES = 2048;
const QMP_POLL_MS = 20;

interface Daemon {
  readonly proc: VmProcess;
  readonly socketPath: string;
}

export class QemuHypervisor implements Hypervisor {
  private vmSpec: VmSpec | undefined;
  private runDirCreated = false;
  private prepared = false;
  private startCalled = false;
  private bootShare: Daemon | undefined;
  private qemu: VmProcess | undefined;
  private qmpClient: QmpClient | undefined;
  private hotplug: VirtioFsHotplug | undefined;
  private blocks: BlockHotplug | undefined;
  /** A restored VM's RAM, held from prepare until QEMU has mapped it. */
  private guestRam: GuestRam | undefined;
  private stopping: Promise<void> | undefined;
  private cleaning: Promise<void> | undefined;
  private readonly startTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly unplugTimeoutMs: number;

  constructor(options: QemuHypervisorOptions = {}) {
    this.startTimeoutMs = options.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS;
    this.stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    this.unplugTimeoutMs = options.unplugTimeoutMs ?? DEFAULT_UNPLUG_TIMEOUT_MS;
  }

  /** The spec given to prepare. */
  get spec(): VmSpec | undefined {
    return this.vmSpec;
  }

  /** QEMU's pid once started. */
  get pid(): number | undefined {
    return this.qemu?.pid;
  }

  /** The QMP connection once started (templates use `migrate` through it). */
  get qmp(): QmpClient | undefined {
    return this.qmpClient;
  }

  /** The last bytes of the serial console, "" when there is none yet. */
  async consoleTail(maxBytes = CONSOLE_TAIL_BYTES): Promise<string> {
    return this.vmSpec ? readTail(this.vmSpec.consoleLog, maxBytes) : "";
  }

  /**
   * Once QEMU has exited: an error saying how, with its stderr and the end
   * of the console log (why a guest died is usually there). Undefined while
   * it runs or before it starts.
   */
  async exitError(): Promise<VmpodError | undefined> {
    const qemu = this.qemu;
    if (!qemu?.exitStatus || !this.vmSpec) return undefined;
    return this.deathError(this.vmSpec, qemu);
  }

  async prepare(spec: VmSpec, options: CallOptions = {}): Promise<void> {
    if (this.vmSpec) throw failedPrecondition("prepare vm: already prepared");
    validateSpec(spec);
    this.vmSpec = spec;
    try {
      await checkSpecFiles(spec);
    } catch (err) {
      throw wrap("check files", err);
    }
    const undo = new Rollback();
    try {
      await mkdir(dirname(spec.runDir), { recursive: true });
      try {
        await mkdir(spec.runDir, { mode: 0o700 });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new VmpodError("AlreadyExists", `run directory ${spec.runDir} exists`);
        throw err;
      }
      this.runDirCreated = true;
      undo.push("remove run dir", async () => {
        await rm(spec.runDir, { recursive: true, force: true });
        this.runDirCreated = false;
      });
      const copyOf = spec.memoryFile?.copyOf;
      if (copyOf !== undefined) {
        const ram = await GuestRam.copyOf(copyOf, options.signal);
        this.guestRam = ram;
        undo.push("close guest ram", () => this.closeGuestRam());
      }
      if (spec.sharedFs && spec.virtiofsd) {
        const fs = spec.sharedFs;
        const startOptions = options.signal ? { signal: options.signal } : {};
        const proc = await startVirtiofsd({ ...spec.virtiofsd, ...fs }, startOptions).catch((err: unknown) => {
          throw wrap("start virtiofsd", err);
        });
        this.bootShare = { proc, socketPath: fs.socketPath };
        undo.push("stop virtiofsd", async () => {
          await stopVirtiofsd(proc, fs.socketPath);
          this.bootShare = undefined;
        });
      }
      undo.commit();
      this.prepared = true;
    } catch (err) {
      throw await rolledBack(undo, err, "prepare run dir");
    }
  }

  async start(options: CallOptions = {}): Promise<void> {
    const spec = this.vmSpec;
    if (!spec || !this.prepared) throw failedPrecondition("start vm: not prepared");
    if (this.startCalled) throw failedPrecondition("start vm: already started");
    this.startCalled = true;
    if (this.stopping || this.cleaning) throw failedPrecondition("start vm: stopped before it started");
    let qemu: SupervisedProcess;
    try {
      qemu = await SupervisedProcess.spawn({ name: "QEMU", path: spec.qemuPath, args: buildQemuArgs(this.launchSpec(spec)), stderrPath: qemuStderrPath(spec), passFds: passedFds(spec) });
    } catch (err) {
      this.closeGuestRam();
      throw wrap("start qemu", err);
    }
    this.qemu = qemu;
    try {
      this.qmpClient = await this.connectQmp(spec, qemu, options.signal);
      // QEMU has mapped the guest's RAM by the time it answers QMP.
      this.closeGuestRam();
      if (this.stopping || this.cleaning) throw new VmpodError("Canceled", "stopped while starting");
      this.hotplug = new VirtioFsHotplug(spec, this.qmpClient, this.unplugTimeoutMs, new Set(nicPorts(spec).values()));
      this.blocks = new BlockHotplug(spec, this.qmpClient, this.unplugTimeoutMs);
    } catch (err) {
      this.qmpClient?.close();
      await qemu.stop(this.stopTimeoutMs).catch(() => {});
      throw wrap("start qemu", err);
    }
  }

  async handle(): Promise<VmHandle> {
    const qemu = this.qemu;
    if (!qemu || !this.vmSpec) throw failedPrecondition("vm handle: not started");
    const shares = this.hotplug?.list() ?? [];
    const ref = async (proc: VmProcess, what: string): Promise<ProcessRef> => {
      const found = await processRef(proc.pid);
      if (!found) throw new VmpodError("Unavailable", `vm handle: ${what} has exited`);
      return found;
    };
    return {
      qemu: await ref(qemu, "QEMU"),
      ...(this.bootShare ? { virtiofsd: await ref(this.bootShare.proc, "virtiofsd") } : {}),
      ...(shares.length > 0
        ? {
            addedShares: await Promise.all(
              shares.map(async (s) => ({ id: s.id, tag: s.tag, sourceDir: s.sourceDir, port: s.port, virtiofsd: await ref(s.daemon, `virtiofsd of ${s.id}`) })),
            ),
          }
        : {}),
    };
  }

  async adopt(spec: VmSpec, handle: VmHandle, options: CallOptions = {}): Promise<void> {
    if (this.vmSpec) throw failedPrecondition("adopt vm: already prepared");
    validateSpec(spec);
    this.vmSpec = spec;
    this.runDirCreated = true;
    this.prepared = true;
    this.startCalled = true;
    try {
      const qemu = await AdoptedProcess.adopt("QEMU", handle.qemu, { path: qemuStderrPath(spec), limit: CONSOLE_TAIL_BYTES });
      this.qemu = qemu;
      if (handle.virtiofsd && spec.sharedFs) {
        const proc = await AdoptedProcess.adopt("virtiofsd", handle.virtiofsd);
        this.bootShare = { proc, socketPath: spec.sharedFs.socketPath };
      }
      const qmp = await QmpClient.connect(spec.qmpSocket, { timeoutMs: this.startTimeoutMs, ...(options.signal ? { signal: options.signal } : {}) });
      this.qmpClient = qmp;
      // QEMU's exit closes QMP first; look at once rather than at the next poll.
      void qmp.done.then(() => qemu.check());
      this.hotplug = new VirtioFsHotplug(spec, qmp, this.unplugTimeoutMs, new Set(nicPorts(spec).values()));
      this.blocks = new BlockHotplug(spec, qmp, this.unplugTimeoutMs);
      for (const share of handle.addedShares ?? []) {
        const daemon = await AdoptedProcess.adopt(`virtiofsd of ${share.id}`, share.virtiofsd);
        this.hotplug.adopt({ id: share.id, tag: share.tag, sourceDir: share.sourceDir, port: share.port, daemon });
      }
    } catch (err) {
      this.qmpClient?.close();
      throw wrap("adopt vm", err);
    }
  }

  async saveState(file: string, options: CallOptions & { readonly timeoutMs: number }): Promise<void> {
    const qmp = this.runningQmp("save vm state");
    await saveState(qmp, file, { ...options, ignoreShared: this.vmSpec?.memoryFile !== undefined }).catch((err: unknown) => {
      throw wrap("save vm state", err);
    });
  }

  async restoreState(file: string, options: CallOptions & { readonly timeoutMs: number }): Promise<void> {
    const qmp = this.runningQmp("restore vm state");
    if (!this.vmSpec?.incoming) throw failedPrecondition("restore vm state: the vm was not started to take a saved state");
    try {
      await loadState(qmp, file, { ...options, ignoreShared: this.vmSpec.memoryFile !== undefined });
    } catch (err) {
      // QEMU exits on a state it cannot load: say how, with its own words.
      const qemu = this.qemu;
      if (qemu && this.vmSpec && (qmp.isClosed || qemu.exitStatus)) {
        const exited = await Promise.race([qemu.wait().then(() => true), sleep(1000).then(() => false)]);
        if (exited) throw new VmpodError("Unavailable", "restore vm state: QEMU exited", { cause: await this.deathError(this.vmSpec, qemu) });
      }
      throw wrap("restore vm state", err);
    }
  }

  async resume(options: CallOptions = {}): Promise<void> {
    await this.runningQmp("resume vm").cont(options.signal ? { signal: options.signal } : {});
  }

  /** Adds the card of the spec's network `id` given with `hotplug`, on its port. */
  private async addNic(id: string, options: CallOptions): Promise<AttachedDevice> {
    const spec = this.vmSpec;
    const nic = spec?.network?.nics.find((n) => n.id === id && n.hotplug);
    const port = spec ? nicPorts(spec).get(id) : undefined;
    if (!nic || !port) throw new VmpodError("NotFound", `no network card ${id} to add in the vm spec`);
    const qmp = this.runningQmp(`add network card ${id}`);
    await qmp.deviceAdd({ driver: "virtio-net-pci", id: nicDeviceId(id), netdev: id, mac: nic.mac.toLowerCase(), romfile: "", bus: port }, options.signal ? { signal: options.signal } : {});
    return { kind: "nic", id, mac: nic.mac.toLowerCase() };
  }

  private runningQmp(step: string): QmpClient {
    const qmp = this.qmpClient;
    if (!qmp || this.stopping || qmp.isClosed) throw failedPrecondition(`${step}: vm not running`);
    return qmp;
  }

  async addDevice(device: HotplugDevice, options: CallOptions = {}): Promise<AttachedDevice> {
    const fs = this.hotplug;
    const blocks = this.blocks;
    if (!fs || !blocks || this.stopping) throw failedPrecondition(`add device ${device.id}: vm not running`);
    try {
      if (device.kind === "nic") return await this.addNic(device.id, options);
      if (fs.has(device.id) || blocks.has(device.id)) throw new VmpodError("AlreadyExists", `device ${device.id} exists`);
      if (device.kind === "block") return await blocks.add(device, options);
      await fs.add(device, options);
      return { kind: "virtio-fs", id: device.id, tag: device.tag };
    } catch (err) {
      throw wrap(`add device ${device.id}`, err);
    }
  }

  async removeDevice(id: string, options: CallOptions = {}): Promise<void> {
    const fs = this.hotplug;
    const blocks = this.blocks;
    if (!fs || !blocks || this.stopping) throw failedPrecondition(`remove device ${id}: vm not running`);
    try {
      if (blocks.has(id)) await blocks.remove(id, options);
      else await fs.remove(id, options);
    } catch (err) {
      throw wrap(`remove device ${id}`, err);
    }
  }

  stop(options: StopOptions = {}): Promise<void> {
    this.stopping ??= this.stopNow(options.timeoutMs ?? this.stopTimeoutMs);
    return this.stopping;
  }

  wait(): Promise<VmExit> {
    if (!this.qemu) return Promise.reject(failedPrecondition("wait for vm: not started"));
    return this.qemu.wait();
  }

  cleanup(): Promise<void> {
    this.closeGuestRam();
    this.cleaning ??= this.cleanupNow();
    return this.cleaning;
  }

  /** The spec QEMU is launched with: a restored VM's RAM is the memfd prepared for it. */
  private launchSpec(spec: VmSpec): VmSpec {
    const ram = this.guestRam;
    return ram && spec.memoryFile ? { ...spec, memoryFile: { path: ram.path } } : spec;
  }

  private closeGuestRam(): void {
    this.guestRam?.close();
    this.guestRam = undefined;
  }

  /** Polls QMP's socket until QEMU answers; QEMU exiting first is the error. */
  private async connectQmp(spec: VmSpec, qemu: VmProcess, signal: AbortSignal | undefined): Promise<QmpClient> {
    const deadline = performance.now() + this.startTimeoutMs;
    for (;;) {
      if (qemu.exitStatus) throw await this.deathError(spec, qemu);
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new VmpodError("DeadlineExceeded", `QMP did not answer within ${this.startTimeoutMs} ms`);
      try {
        return await QmpClient.connect(spec.qmpSocket, signal ? { signal, timeoutMs: remaining } : { timeoutMs: remaining });
      } catch (err) {
        if (kindOf(err) !== "Unavailable") throw err;
      }
      try {
        await sleep(QMP_POLL_MS, signal);
      } catch (err) {
        throw wrap("connect qmp", err, "Canceled");
      }
    }
  }

  /** The error for a QEMU that exited: its stderr and the console's last lines. */
  private async deathError(spec: VmSpec, qemu: VmProcess): Promise<VmpodError> {
    const status = await qemu.wait();
    const parts = [`QEMU ${describeExit(status)}`];
    const stderr = qemu.stderr();
    if (stderr !== "") parts.push(stderr);
    const tail = (await readTail(spec.consoleLog, CONSOLE_TAIL_BYTES)).trim();
    if (tail !== "") parts.push(`console log ends with:\n${tail}`);
    return new VmpodError("Internal", parts.join(": "));
  }

  private async stopNow(timeoutMs: number): Promise<void> {
    const failures: unknown[] = [];
    const qemu = this.qemu;
    const qmp = this.qmpClient;
    if (qemu) {
      const graceful = qmp && !qmp.isClosed ? () => qmp.quit({ timeoutMs }) : undefined;
      await qemu.stop(timeoutMs, graceful).catch((err: unknown) => failures.push(wrap("stop qemu", err)));
    }
    qmp?.close();
    if (this.hotplug) await this.hotplug.stopDaemons().catch((err: unknown) => failures.push(err));
    this.blocks?.clear();
    if (this.bootShare) {
      await stopVirtiofsd(this.bootShare.proc, this.bootShare.socketPath).catch((err: unknown) => failures.push(wrap("stop virtiofsd", err)));
    }
    if (failures.length > 0) throw combine("stop vm", failures);
  }

  private async cleanupNow(): Promise<void> {
    const failures: unknown[] = [];
    await this.stop().catch((err: unknown) => failures.push(err));
    const spec = this.vmSpec;
    // Files are touched only when this VM owns its run directory: prepare
    // may have failed because another VM holds it.
    if (spec && this.runDirCreated) {
      const paths = [spec.qmpSocket, spec.consoleLog, qemuStderrPath(spec)];
      if (spec.agent) paths.push(spec.agent.socketPath);
      if (spec.sharedFs) paths.push(spec.sharedFs.socketPath);
      for (const path of paths) await rm(path, { force: true }).catch((err: unknown) => failures.push(err));
      await rm(spec.runDir, { recursive: true, force: true }).then(
        () => (this.runDirCreated = false),
        (err: unknown) => failures.push(err),
      );
    }
    if (failures.length > 0) throw combine("cleanup vm", failures);
  }
}

/** QEMU's stderr goes to a file in the run dir: it outlives vmpod when the VM does. */
function qemuStderrPath(spec: VmSpec): string {
  return join(spec.runDir, "qemu.stderr");
}

/** Runs a rollback after `err`; the error to throw names both when the rollback fails too. */
async function rolledBack(undo: Rollback, err: unknown, step: string): Promise<VmpodError> {
  const primary = err instanceof VmpodError ? err : wrap(step, err);
  try {
    await undo.rollback();
  } catch (undoErr) {
    return new VmpodError(primary.kind, primary.message, { cause: new AggregateError([primary, undoErr], messageOf(undoErr)) });
  }
  return primary;
}

function combine(step: string, failures: unknown[]): VmpodError {
  if (failures.length === 1) return wrap(step, failures[0]);
  return new VmpodError(kindOf(failures[0]) ?? "Internal", step, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
}
