/**
 * A QMP client: JSON lines over QEMU's monitor socket. After the greeting and
 * `qmp_capabilities`, commands carry ids so that concurrent calls are matched
 * to their answers; asynchronous events go to listeners.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { VmpodError, messageOf, type ErrorKind } from "../common/errors.js";

export interface QmpCallOptions {
  /** Stops waiting for the answer; QEMU may still carry the command out. */
  readonly signal?: AbortSignal;
  readonly timeoutMs?: number;
}

export interface QmpGreeting {
  readonly version: { readonly qemu: { readonly major: number; readonly minor: number; readonly micro: number }; readonly package: string };
  readonly capabilities: readonly string[];
}

export interface QmpEvent {
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  readonly timestamp: { readonly seconds: number; readonly microseconds: number };
}

export type QmpEventListener = (event: QmpEvent) => void;

export interface QmpStatus {
  /** QEMU's RunState: "running", "paused", "prelaunch", "shutdown", "inmigrate"... */
  readonly status: string;
  readonly running: boolean;
}

/** What query-migrate answers, the part vmpod reads. */
export interface MigrationInfo {
  readonly status?: string;
  readonly "error-desc"?: string;
}

/** A chardev backend as `chardev-add` takes it, e.g. a unix socket client. */
export type ChardevBackend = { readonly type: string; readonly data: Readonly<Record<string, unknown>> };

/** `device_add` arguments: the driver, the id, and the driver's properties. */
export type DeviceProps = { readonly driver: string; readonly id: string } & Readonly<Record<string, unknown>>;

interface Pending {
  readonly command: string;
  resolve(value: unknown): void;
  reject(err: Error): void;
}

/** A line longer than this from QEMU ends the connection. */
const MAX_LINE_BYTES = 16 * 1024 * 1024;

/** How QMP error classes map to kinds; anything else is Internal. */
const KIND_OF_CLASS: Readonly<Record<string, ErrorKind>> = {
  CommandNotFound: "Unimplemented",
  DeviceNotFound: "NotFound",
  DeviceNotActive: "FailedPrecondition",
  KVMMissingCap: "FailedPrecondition",
};

export class QmpClient {
  private readonly pending = new Map<number, Pending>();
  /** Everything waiting on this connection, told when it ends. */
  private readonly waiters = new Set<(err: Error) => void>();
  private readonly listeners = new Map<string, Set<QmpEventListener>>();
  private buffered = "";
  private nextId = 1;
  private failure: Error | undefined;
  private greetingValue: QmpGreeting | undefined;
  private onGreeting: ((greeting: QmpGreeting) => void) | undefined;
  private readonly ended: Promise<void>;
  private markEnded!: () => void;

  /**
   * Connects to a QMP unix socket, reads the greeting and negotiates
   * capabilities. Fails with Unavailable when nothing listens there.
   */
  static async connect(path: string, options: QmpCallOptions = {}): Promise<QmpClient> {
    const socket = net.connect(path);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
    } catch (err) {
      socket.destroy();
      throw new VmpodError("Unavailable", `connect qmp ${path}`, { cause: err });
    }
    const client = new QmpClient(socket);
    try {
      await client.handshake(options);
    } catch (err) {
      client.destroy(err instanceof Error ? err : new Error(messageOf(err)));
      throw err;
    }
    return client;
  }

  /** A client over an already connected stream; call `handshake` next. */
  constructor(private readonly stream: Duplex) {
    this.ended = new Promise((resolve) => (this.markEnded = resolve));
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => this.onData(chunk));
    stream.on("error", (err) => this.fail(new VmpodError("Unavailable", "qmp connection failed", { cause: err })));
    stream.on("close", () => this.fail(new VmpodError("Unavailable", "qmp connection closed")));
    stream.on("end", () => this.fail(new VmpodError("Unavailable", "qmp connection closed by QEMU")));
  }

  /** Waits for QEMU's greeting and leaves capabilities negotiation mode. */
  async handshake(options: QmpCallOptions = {}): Promise<QmpGreeting> {
    const greeting =
      this.greetingValue ??
      (await this.track<QmpGreeting>(
        "greeting",
        options,
        (settle) => (this.onGreeting = (value) => settle(undefined, value)),
        () => (this.onGreeting = undefined),
      ));
    await this.execute("qmp_capabilities", undefined, options);
    return greeting;
  }

  /** The greeting QEMU sent, once received. */
  get greeting(): QmpGreeting | undefined {
    return this.greetingValue;
  }

  /** True once the connection has ended, for whatever reason. */
  get isClosed(): boolean {
    return this.failure !== undefined;
  }

  /** Resolves when the connection has ended. */
  get done(): Promise<void> {
    return this.ended;
  }

  /** Runs any QMP command; a QMP error becomes a VmpodError naming its class and description. */
  execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, options: QmpCallOptions = {}): Promise<T> {
    const id = this.nextId++;
    return this.track<T>(
      command,
      options,
      (settle) => {
        this.pending.set(id, {
          command,
          resolve: (value) => settle(undefined, value as T),
          reject: (err) => settle(err),
        });
        const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
        this.stream.write(JSON.stringify(message) + "\n");
      },
      () => this.pending.delete(id),
    );
  }

  queryStatus(options?: QmpCallOptions): Promise<QmpStatus> {
    return this.execute<QmpStatus>("query-status", undefined, options);
  }

  /** Pauses the vCPUs. */
  async stop(options?: QmpCallOptions): Promise<void> {
    await this.execute("stop", undefined, options);
  }

  /** Resumes the vCPUs. */
  async cont(options?: QmpCallOptions): Promise<void> {
    await this.execute("cont", undefined, options);
  }

  /** Asks QEMU to exit. The connection closing before the answer counts as success. */
  async quit(options?: QmpCallOptions): Promise<void> {
    try {
      await this.execute("quit", undefined, options);
    } catch (err) {
      if (!(err instanceof VmpodError && err.kind === "Unavailable" && err === this.failure)) throw err;
    }
  }

  async deviceAdd(props: DeviceProps, options?: QmpCallOptions): Promise<void> {
    await this.execute("device_add", props, options);
  }

  /** Requests removal; the device is gone when DEVICE_DELETED arrives for it. */
  async deviceDel(id: string, options?: QmpCallOptions): Promise<void> {
    await this.execute("device_del", { id }, options);
  }

  async chardevAdd(id: string, backend: ChardevBackend, options?: QmpCallOptions): Promise<void> {
    await this.execute("chardev-add", { id, backend }, options);
  }

  /** Starts saving the VM's state to `uri` ("exec:..."); query-migrate follows it. */
  async migrate(uri: string, options?: QmpCallOptions): Promise<void> {
    await this.execute("migrate", { uri }, options);
  }

  /** On a QEMU started with `-incoming defer`: starts loading a saved state from `uri`. */
  async migrateIncoming(uri: string, options?: QmpCallOptions): Promise<void> {
    await this.execute("migrate-incoming", { uri }, options);
  }

  /** Sets migration parameters (`max-bandwidth`, ...). */
  async migrateSetParameters(params: Readonly<Record<string, unknown>>, options?: QmpCallOptions): Promise<void> {
    await this.execute("migrate-set-parameters", params, options);
  }

  /** The state of the current or last migration ("active", "completed", "failed"...; absent before any). */
  queryMigrate(options?: QmpCallOptions): Promise<MigrationInfo> {
    return this.execute<MigrationInfo>("query-migrate", undefined, options);
  }

  async chardevRemove(id: string, options?: QmpCallOptions): Promise<void> {
    await this.execute("chardev-remove", { id }, options);
  }

  /** Calls `listener` for every event named `event` ("*" for all); returns the unsubscribe. */
  on(event: string, listener: QmpEventListener): () => void {
    let set = this.listeners.get(event);
    if (!set) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.listeners.get(event) === set) this.listeners.delete(event);
    };
  }

  /** The next event named `event` that `match` accepts. Subscribe before causing it. */
  waitForEvent(event: string, match: (event: QmpEvent) => boolean = () => true, options: QmpCallOptions = {}): Promise<QmpEvent> {
    let off: (() => void) | undefined;
    return this.track<QmpEvent>(
      `wait for ${event}`,
      options,
      (settle) => {
        off = this.on(event, (e) => {
          if (match(e)) settle(undefined, e);
        });
      },
      () => off?.(),
    );
  }

  /** Ends the connection; pending calls fail with Unavailable. Idempotent. */
  close(): void {
    this.destroy(new VmpodError("Unavailable", "qmp connection closed"));
  }

  /** Ends the connection, failing pending calls with `reason`. Idempotent. */
  destroy(reason: Error): void {
    this.fail(reason);
    this.stream.destroy();
  }

  /**
   * Runs `begin` with a settle function that finishes the returned promise
   * once: on an answer, the connection's end, a timeout or an abort. `end`
   * undoes what `begin` registered; timers, abort listeners and the
   * connection-end hook are removed with it.
   */
  private track<T>(
    what: string,
    options: QmpCallOptions,
    begin: (settle: (err: Error | undefined, value?: T) => void) => void,
    end: () => void,
  ): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    if (options.signal?.aborted) return Promise.reject(new VmpodError("Canceled", `qmp ${what}: canceled`));
    return new Promise<T>((resolve, reject) => {
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      const onAbort = () => settle(new VmpodError("Canceled", `qmp ${what}: canceled`));
      const onEnd = (err: Error) => settle(err);
      const settle = (err: Error | undefined, value?: T) => {
        if (done) return;
        done = true;
        end();
        this.waiters.delete(onEnd);
        if (timer) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else resolve(value as T);
      };
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(() => settle(new VmpodError("DeadlineExceeded", `qmp ${what}: no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
      }
      options.signal?.addEventListener("abort", onAbort, { once: true });
      this.waiters.add(onEnd);
      try {
        begin(settle);
      } catch (err) {
        settle(new VmpodError("Unavailable", `qmp ${what}`, { cause: err }));
      }
    });
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let newline: number;
    while ((newline = this.buffered.indexOf("\n")) >= 0) {
      const line = this.buffered.slice(0, newline).trim();
      this.buffered = this.buffered.slice(newline + 1);
      if (line !== "") this.onLine(line);
      if (this.failure) return;
    }
    if (this.buffered.length > MAX_LINE_BYTES) {
      this.destroy(new VmpodError("ResourceExhausted", `qmp: a message longer than ${MAX_LINE_BYTES} bytes`));
    }
  }

  private onLine(line: string): void {
    let message: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("not an object");
      message = parsed as Record<string, unknown>;
    } catch (err) {
      this.destroy(new VmpodError("Internal", `qmp: unreadable message ${JSON.stringify(line.slice(0, 200))}`, { cause: err }));
      return;
    }
    if ("QMP" in message) {
      this.greetingValue = message["QMP"] as QmpGreeting;
      this.onGreeting?.(this.greetingValue);
      return;
    }
    if (typeof message["event"] === "string") {
      this.emit(message as unknown as QmpEvent);
      return;
    }
    const id = message["id"];
    const pending = typeof id === "number" ? this.pending.get(id) : undefined;
    if (!pending) {
      // An answer without our id means QEMU could not read a command of ours.
      if (id === undefined && "error" in message) {
        this.destroy(new VmpodError("Internal", `qmp: ${describeQmpError(message["error"])}`));
      }
      return; // otherwise the answer to a call that was given up
    }
    if ("error" in message) {
      const { errorClass } = qmpErrorParts(message["error"]);
      pending.reject(new VmpodError(KIND_OF_CLASS[errorClass] ?? "Internal", `qmp ${pending.command}: ${describeQmpError(message["error"])}`));
    } else {
      pending.resolve(message["return"]);
    }
  }

  private emit(event: QmpEvent): void {
    const normalized: QmpEvent = {
      event: event.event,
      data: event.data ?? {},
      timestamp: event.timestamp ?? { seconds: 0, microseconds: 0 },
    };
    for (const key of [event.event, "*"]) {
      for (const listener of [...(this.listeners.get(key) ?? [])]) {
        try {
          listener(normalized);
        } catch {
          // A listener's failure is its own; the connection goes on.
        }
      }
    }
  }

  private fail(err: Error): void {
    if (!this.failure) {
      this.failure = err;
      this.markEnded();
    }
    for (const waiter of [...this.waiters]) waiter(this.failure);
  }
}

function qmpErrorParts(error: unknown): { errorClass: string; desc: string } {
  const e = (error ?? {}) as { class?: unknown; desc?: unknown };
  return { errorClass: typeof e.class === "string" ? e.class : "UnknownError", desc: typeof e.desc === "string" ? e.desc : JSON.stringify(error) };
}

function describeQmpError(error: unknown): string {
  const { errorClass, desc } = qmpErrorParts(error);
  return `${errorClass}: ${desc}`;
}
