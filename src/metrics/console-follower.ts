/**
 * In debug mode, each pod VM's serial console (the guest kernel's
 * warnings, its init's lines, and the agent's own JSON log) copied into the
 * daemon's log as it is written, a line at a time, tagged with the pod id:
 * the file is followed from the VM's boot (from its current end for a VM
 * taken over after a restart, whose earlier lines were copied by the vmpod
 * before, and for the VMs already running when debug mode is turned on)
 * until the VM exits or debug mode is turned off, then read to its end
 * once more.
 *
 * Lines that are JSON objects (the agent's) go under `guest`, the rest as
 * `line`. Without debug mode the console log stays a file in the pod's
 * state dir (PodSandboxStatus's verbose info names it).
 */
import { open, type FileHandle } from "node:fs/promises";
import { StringDecoder } from "node:string_decoder";
import { messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { ObservedVm, VmObserver } from "../sandbox/observer.js";

const POLL_MS = 250;
const READ_BYTES = 64 * 1024;
/** A longer line (a guest writing without newlines) is logged in pieces of this many characters. */
const MAX_LINE = 16 * 1024;

export interface ConsoleFollowerOptions {
  /** Whether consoles are copied (debug mode); true unless told. */
  readonly enabled?: boolean;
  /** How often each console file is read for new lines; 250 ms unless told. */
  readonly pollMs?: number;
}

export class ConsoleFollower implements VmObserver {
  /** Every VM running, followed or not, for when debug mode is turned on. */
  private readonly vms = new Map<string, ObservedVm>();
  private readonly follows = new Map<string, { readonly stop: AbortController; readonly done: Promise<void> }>();
  private readonly pollMs: number;
  private enabled: boolean;
  private closed = false;

  constructor(
    private readonly logger: Logger,
    options: ConsoleFollowerOptions = {},
  ) {
    this.pollMs = options.pollMs ?? POLL_MS;
    this.enabled = options.enabled ?? true;
  }

  booted(vm: ObservedVm): void {
    this.track(vm);
    if (this.enabled) this.follow(vm, "start");
  }

  reattached(vm: ObservedVm): void {
    this.track(vm);
    if (this.enabled) this.follow(vm, "end");
  }

  /**
   * Debug mode turned on (the running VMs' consoles are followed from
   * their current end) or off (every follow stops once it has read what
   * is written).
   */
  setEnabled(on: boolean): void {
    if (on === this.enabled) return;
    this.enabled = on;
    if (on) for (const vm of this.vms.values()) this.follow(vm, "end");
    else for (const f of this.follows.values()) f.stop.abort();
  }

  /** Pods whose console is being followed. */
  get following(): string[] {
    return [...this.follows.keys()];
  }

  /** Stops following every console (what was written so far is logged first). */
  async close(): Promise<void> {
    this.closed = true;
    for (const f of this.follows.values()) f.stop.abort();
    await Promise.all([...this.follows.values()].map((f) => f.done));
  }

  private track(vm: ObservedVm): void {
    this.vms.set(vm.id, vm);
    const forget = () => {
      if (this.vms.get(vm.id) === vm) this.vms.delete(vm.id);
    };
    void vm.exited.then(forget, forget);
  }

  private follow(vm: ObservedVm, from: "start" | "end"): void {
    const earlier = this.follows.get(vm.id);
    if (this.closed || (earlier && !earlier.stop.signal.aborted)) return;
    const stop = new AbortController();
    const log = this.logger.child({ pod: vm.id });
    void vm.exited.then(
      () => stop.abort(),
      () => stop.abort(),
    );
    // A follow still reading its last lines (debug mode turned off and on again) finishes first.
    const done = (earlier?.done ?? Promise.resolve())
      .then(() => followFile(vm.consoleLog, from, stop.signal, this.pollMs, log))
      .catch((err: unknown) => log.warn("stopped following the guest console", { file: vm.consoleLog, err: messageOf(err) }))
      .finally(() => {
        if (this.follows.get(vm.id)?.stop === stop) this.follows.delete(vm.id);
      });
    this.follows.set(vm.id, { stop, done });
  }
}

async function followFile(path: string, from: "start" | "end", stop: AbortSignal, pollMs: number, log: Logger): Promise<void> {
  let file: FileHandle;
  try {
    file = await open(path, "r");
  } catch (err) {
    // The VM is gone already, with its state dir.
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  try {
    const lines = new LineSplitter((line) => emit(log, line));
    let offset = from === "end" ? (await file.stat()).size : 0;
    const buffer = Buffer.alloc(READ_BYTES);
    const drain = async () => {
      for (;;) {
        const { bytesRead } = await file.read(buffer, 0, buffer.length, offset);
        if (bytesRead === 0) return;
        offset += bytesRead;
        lines.push(buffer.subarray(0, bytesRead));
      }
    };
    while (!stop.aborted) {
      await drain();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, pollMs);
        function done() {
          clearTimeout(timer);
          stop.removeEventListener("abort", done);
          resolve();
        }
        stop.addEventListener("abort", done, { once: true });
      });
    }
    // What the guest wrote last, the reason it stopped among it.
    await drain();
    lines.end();
  } finally {
    await file.close();
  }
}

/** The console's lines, as they come in pieces: UTF-8 kept whole, CR dropped, overlong lines cut. */
export class LineSplitter {
  private readonly decoder = new StringDecoder("utf8");
  private pending = "";

  constructor(private readonly onLine: (line: string) => void) {}

  push(bytes: Buffer): void {
    this.pending += this.decoder.write(bytes);
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      this.line(this.pending.slice(0, nl));
      this.pending = this.pending.slice(nl + 1);
    }
    while (this.pending.length >= MAX_LINE) {
      this.line(this.pending.slice(0, MAX_LINE));
      this.pending = this.pending.slice(MAX_LINE);
    }
  }

  /** The last line, even without its newline. */
  end(): void {
    this.pending += this.decoder.end();
    if (this.pending !== "") this.line(this.pending);
    this.pending = "";
  }

  private line(text: string): void {
    const line = text.replace(/\r+$/, "").replace(/\r/g, "");
    if (line.trim() !== "") this.onLine(line);
  }
}

function emit(log: Logger, line: string): void {
  if (line.startsWith("{")) {
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) return log.debug("guest log", { guest: parsed });
    } catch {
      // not JSON after all: the line as it is
    }
  }
  log.debug("guest console", { line });
}

