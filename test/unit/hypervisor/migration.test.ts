import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { loadState, saveState } from "../../../src/hypervisor/migration.js";
import { buildQemuArgs, nicPorts } from "../../../src/hypervisor/qemu-args.js";
import type { QmpClient } from "../../../src/hypervisor/qmp.js";
import { validateSpec, type VmSpec } from "../../../src/hypervisor/spec.js";

/** A QMP stand-in answering each command from a script; it records what it was asked. */
class ScriptedQmp {
  readonly calls: string[] = [];
  constructor(private readonly answers: Record<string, unknown[]>) {}

  private answer(command: string): unknown {
    const queue = this.answers[command];
    const next = queue && queue.length > 1 ? queue.shift() : queue?.[0];
    if (next instanceof Error) throw next;
    return next;
  }

  async stop(): Promise<void> {
    this.calls.push("stop");
  }
  async execute(command: string, args: Record<string, unknown>): Promise<void> {
    this.calls.push(`${command} ${JSON.stringify(args)}`);
  }
  async migrateSetParameters(params: Record<string, unknown>): Promise<void> {
    this.calls.push(`migrate-set-parameters ${JSON.stringify(params)}`);
  }
  async migrate(uri: string): Promise<void> {
    this.calls.push(`migrate ${uri}`);
  }
  async migrateIncoming(uri: string): Promise<void> {
    this.calls.push(`migrate-incoming ${uri}`);
  }
  async queryMigrate(): Promise<unknown> {
    this.calls.push("query-migrate");
    return this.answer("query-migrate");
  }
  async queryStatus(): Promise<unknown> {
    this.calls.push("query-status");
    return this.answer("query-status");
  }
}

function qmp(fake: ScriptedQmp): QmpClient {
  return fake as unknown as QmpClient;
}

/** A q35 VM under TCG, with nothing but its QMP socket and console. */
const Q35: VmSpec = {
  id: "p",
  qemuPath: "/usr/bin/qemu-system-x86_64",
  runDir: "/run/p",
  machine: "q35",
  accel: "tcg",
  vcpus: 1,
  memoryMiB: 256,
  qmpSocket: "/run/p/qmp.sock",
  consoleLog: "/run/p/console.log",
};

describe("vm state saved to and loaded from a file", () => {
  it("pauses the VM, lifts the bandwidth limit, saves through cat and waits for completion", async () => {
    const fake = new ScriptedQmp({ "query-migrate": [{ status: "active" }, { status: "active" }, { status: "completed" }] });
    await saveState(qmp(fake), "/var/lib/vmpod/templates/abc/state", { timeoutMs: 5_000 });
    assert.deepEqual(fake.calls, [
      "stop",
      `migrate-set-parameters {"max-bandwidth":${2 ** 40}}`,
      "migrate exec:cat > '/var/lib/vmpod/templates/abc/state'",
      "query-migrate",
      "query-migrate",
      "query-migrate",
    ]);
  });

  it("leaves shared file-backed RAM out of the stream on both ends when asked (x-ignore-shared), before migrating", async () => {
    const capability = `migrate-set-capabilities {"capabilities":[{"capability":"x-ignore-shared","state":true}]}`;
    const saving = new ScriptedQmp({ "query-migrate": [{ status: "completed" }] });
    await saveState(qmp(saving), "/t/state", { timeoutMs: 5_000, ignoreShared: true });
    assert.deepEqual(saving.calls, ["stop", `migrate-set-parameters {"max-bandwidth":${2 ** 40}}`, capability, "migrate exec:cat > '/t/state'", "query-migrate"]);
    const loading = new ScriptedQmp({ "query-status": [{ status: "paused" }] });
    await loadState(qmp(loading), "/t/state", { timeoutMs: 5_000, ignoreShared: true });
    assert.deepEqual(loading.calls, [capability, "migrate-incoming exec:cat '/t/state'", "query-status"]);
  });

  it("reports a failed save with QEMU's description", async () => {
    const fake = new ScriptedQmp({ "query-migrate": [{ status: "failed", "error-desc": "disk full" }] });
    await assert.rejects(saveState(qmp(fake), "/t/state", { timeoutMs: 5_000 }), (err: unknown) => err instanceof VmpodError && /migration failed: disk full/.test(err.message));
  });

  it("refuses a file name the shell would read otherwise", async () => {
    for (const bad of ["relative/state", "/t/st ate", "/t/'state", "/t/$(reboot)"]) {
      await assert.rejects(saveState(qmp(new ScriptedQmp({})), bad, { timeoutMs: 1_000 }), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument");
    }
  });

  it("loads a state and waits until QEMU leaves inmigrate; a state that leaves the VM elsewhere is an error", async () => {
    const fake = new ScriptedQmp({ "query-status": [{ status: "inmigrate" }, { status: "paused" }] });
    await loadState(qmp(fake), "/t/state", { timeoutMs: 5_000 });
    assert.deepEqual(fake.calls, ["migrate-incoming exec:cat '/t/state'", "query-status", "query-status"]);
    const odd = new ScriptedQmp({ "query-status": [{ status: "internal-error" }] });
    await assert.rejects(loadState(qmp(odd), "/t/state", { timeoutMs: 5_000 }), /the vm is internal-error/);
  });

  it("gives up at the deadline", async () => {
    const fake = new ScriptedQmp({ "query-status": [{ status: "inmigrate" }] });
    await assert.rejects(loadState(qmp(fake), "/t/state", { timeoutMs: 50 }), (err: unknown) => err instanceof VmpodError && err.kind === "DeadlineExceeded");
  });

  it("starts QEMU waiting for a saved state with -incoming defer", () => {
    const spec: VmSpec = { ...Q35, paused: true, incoming: true };
    const args = buildQemuArgs(spec);
    assert.deepEqual(args.slice(args.indexOf("-S"), args.indexOf("-S") + 3), ["-S", "-incoming", "defer"]);
    assert.ok(!buildQemuArgs({ ...spec, incoming: false }).includes("-incoming"));
  });

  it("puts only the tap backend of a card added later on the command line, and gives it the last free port", () => {
    const spec: VmSpec = {
      ...Q35,
      hotplugPorts: 2,
      network: { nics: [{ id: "net0", mac: "02:00:00:00:00:01", tapFd: 9, hotplug: true }] },
    };
    validateSpec(spec);
    const args = buildQemuArgs(spec);
    assert.deepEqual(args.slice(-2), ["-netdev", "tap,id=net0,fd=3"]);
    assert.ok(!args.some((a) => a.startsWith("virtio-net-pci")));
    assert.deepEqual([...nicPorts(spec)], [["net0", "hp1"]]);
    assert.throws(() => validateSpec({ ...spec, hotplugPorts: 0 }), /added later need q35 and as many hot-plug ports/);
    assert.throws(() => validateSpec({ ...spec, machine: "microvm", hotplugPorts: 0 }), /added later need q35/);
  });
});
