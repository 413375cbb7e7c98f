import assert from "node:assert/strict";
import { PassThrough, type Duplex } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import type { OciProcess } from "../../../src/common/oci-spec.js";
import { ResizeQueue } from "../../../src/cri/streaming/resize.js";
import { FIRST_SIZE_WAIT_MS, execWithClient, firstSize } from "../../../src/sandbox/container-exec.js";
import type { ContainerUsage, PodSandbox } from "../../../src/sandbox/controller.js";
import type { ProcessIo } from "../../../src/sandbox/process-io.js";
import type { TerminalSize } from "../../../src/sandbox/runtime.js";

function unused(): never {
  throw new VmpodError("Unimplemented", "not used by exec");
}

/** A pod whose exec records the process it was asked for, its resizes, and exits when told. */
class ExecPod implements PodSandbox {
  readonly id = "pod";
  readonly handler = "fake";
  readonly wantsBlockImages = false;
  readonly gone = new Promise<void>(() => undefined);
  readonly processes: OciProcess[] = [];
  readonly resizes: string[] = [];
  /** Resolves when exec was called. */
  readonly started: Promise<void>;
  private markStarted!: () => void;
  private finish!: (code: number) => void;
  private readonly stdout = new PassThrough();

  constructor() {
    this.started = new Promise((r) => (this.markStarted = r));
  }

  /** The process writes its last output and exits with `code`. */
  exit(code: number): void {
    this.stdout.end("bye\n");
    this.finish(code);
  }

  async exec(_containerId: string, _execId: string, process: OciProcess): Promise<ProcessIo> {
    this.processes.push(structuredClone(process));
    const exited = new Promise<number>((r) => (this.finish = r));
    this.markStarted();
    return {
      stdout: this.stdout,
      wait: () => exited,
      resize: async (rows, columns) => {
        this.resizes.push(`${rows}x${columns}`);
      },
    };
  }

  info = () => ({});
  shareMount = unused;
  createContainer = unused;
  startContainer = unused;
  io = unused;
  signal = unused;
  wait = unused;
  oomKilled = async () => false;
  update = unused;
  usage = (): Promise<ContainerUsage> => unused();
  removeContainer = unused;
  openPort = (): Promise<Duplex> => unused();
  stop = unused;
}

function terminalProcess(): OciProcess {
  return { args: ["sh", "-c", "stty size"], cwd: "/", user: { uid: 0, gid: 0 }, terminal: true };
}

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe("exec with a client", () => {
  it("makes a terminal exec with the client's first size as its console size, and resizes it with the later ones", async () => {
    const pod = new ExecPod();
    const resize = new ResizeQueue();
    resize.push({ width: 101, height: 33 });
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on("data", (c: Buffer) => chunks.push(c));
    const done = execWithClient(pod, "c1", terminalProcess(), { stdout: out, resize }, silentLogger);
    await pod.started;
    assert.deepEqual(pod.processes[0]?.consoleSize, { height: 33, width: 101 }, "the size the process is made with");
    resize.push({ width: 120, height: 40 });
    await until("the second size", () => pod.resizes.length === 1);
    assert.deepEqual(pod.resizes, ["40x120"], "the first size is not applied a second time");
    pod.exit(7);
    assert.equal(await done, 7);
    assert.equal(Buffer.concat(chunks).toString(), "bye\n");
  });

  it("waits a moment for a size that has not come yet, and starts without one when none comes, applying it late", async function () {
    this.timeout(FIRST_SIZE_WAIT_MS * 5);
    const pod = new ExecPod();
    const resize = new ResizeQueue();
    const done = execWithClient(pod, "c1", terminalProcess(), { stdout: new PassThrough().resume(), resize }, silentLogger);
    setTimeout(() => resize.push({ width: 90, height: 20 }), FIRST_SIZE_WAIT_MS / 4);
    await pod.started;
    assert.deepEqual(pod.processes[0]?.consoleSize, { height: 20, width: 90 });

    const later = new ExecPod();
    const silent = new ResizeQueue();
    const t0 = Date.now();
    const second = execWithClient(later, "c1", terminalProcess(), { stdout: new PassThrough().resume(), resize: silent }, silentLogger);
    await later.started;
    assert.ok(Date.now() - t0 >= FIRST_SIZE_WAIT_MS - 20, "started before the wait was over");
    assert.equal(later.processes[0]?.consoleSize, undefined);
    silent.push({ width: 80, height: 24 });
    await until("the late size", () => later.resizes.length === 1);
    assert.deepEqual(later.resizes, ["24x80"]);
    pod.exit(0);
    later.exit(0);
    assert.deepEqual(await Promise.all([done, second]), [0, 0]);
  });

  it("leaves an exec without a terminal, or a 0x0 size, without a console size", async () => {
    const plain = new ExecPod();
    const resize = new ResizeQueue();
    resize.push({ width: 101, height: 33 });
    const done = execWithClient(plain, "c1", { ...terminalProcess(), terminal: false }, { stdout: new PassThrough().resume(), resize }, silentLogger);
    await plain.started;
    assert.equal(plain.processes[0]?.consoleSize, undefined);
    plain.exit(0);
    await done;

    const zero = new ExecPod();
    const sizes = new ResizeQueue();
    sizes.push({ width: 0, height: 0 });
    const done2 = execWithClient(zero, "c1", terminalProcess(), { stdout: new PassThrough().resume(), resize: sizes }, silentLogger);
    await zero.started;
    assert.equal(zero.processes[0]?.consoleSize, undefined);
    zero.exit(0);
    await done2;
  });

  it("firstSize: the sizes after the first come in order, nothing after the end", async () => {
    const q = new ResizeQueue();
    q.push({ width: 1, height: 1 });
    q.push({ width: 2, height: 2 });
    q.push({ width: 3, height: 3 });
    q.end();
    const { first, rest } = await firstSize(q, 100);
    assert.deepEqual(first, { width: 1, height: 1 });
    const seen: TerminalSize[] = [];
    for await (const s of rest) seen.push(s);
    assert.deepEqual(seen, [
      { width: 2, height: 2 },
      { width: 3, height: 3 },
    ]);

    const empty = new ResizeQueue();
    empty.end();
    const none = await firstSize(empty, 100);
    assert.equal(none.first, undefined);
    for await (const s of none.rest) assert.fail(`a size after the end: ${JSON.stringify(s)}`);
  });
});
