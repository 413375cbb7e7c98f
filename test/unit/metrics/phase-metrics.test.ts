/**
 * The phase families: VM boot phases as the engine's observer gets them,
 * network set-ups timed by the wrapper around a fake pod network, and image
 * pulls told by the real image service over a small in-memory registry
 * (bytes received, time and outcome).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { Registry } from "prom-client";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { digestOf, type Digest } from "../../../src/image/digest.js";
import { LocalImageService } from "../../../src/image/service.js";
import type { BlobDownload, Descriptor, FetchedManifest, ImageReference, LayerUnpacker, Registry as ImageRegistry, UnpackResult } from "../../../src/image/types.js";
import { TimedPodNetwork } from "../../../src/metrics/network-timing.js";
import { PhaseMetrics } from "../../../src/metrics/phase-metrics.js";
import { vmObservers } from "../../../src/metrics/vm-observers.js";
import type { PodNetwork, PodNetworkAttachment, PodNetworkRequest } from "../../../src/network/types.js";
import { parseExposition, valueOf } from "./samples.js";

/** One image, `library/app:1`, with one layer; counts what it serves. */
class OneImageRegistry implements ImageRegistry {
  readonly layer = Buffer.from("the one layer of app:1, some bytes");
  readonly config: Buffer;
  readonly manifest: Buffer;
  readonly manifestDigest: Digest;

  constructor() {
    this.config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: [digestOf(this.layer)] } }));
    this.manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", digest: digestOf(this.config), size: this.config.length },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: digestOf(this.layer), size: this.layer.length }],
      }),
    );
    this.manifestDigest = digestOf(this.manifest);
  }

  async getManifest(ref: ImageReference): Promise<FetchedManifest> {
    if (`${ref.repository}:${ref.tag ?? ""}` !== "library/app:1") throw new VmpodError("NotFound", `manifest ${ref.repository}:${ref.tag ?? ""} unknown`);
    return { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: this.manifestDigest, bytes: this.manifest, endpoint: "fake://registry" };
  }

  async getManifestByDigest(ref: ImageReference): Promise<FetchedManifest> {
    return this.getManifest(ref);
  }

  async openBlob(_ref: ImageReference, descriptor: Descriptor): Promise<BlobDownload> {
    const bytes = [this.config, this.layer].find((b) => digestOf(b) === descriptor.digest);
    if (!bytes) throw new VmpodError("NotFound", `blob ${descriptor.digest} unknown`);
    // In two pieces, as a network would give them.
    return { body: Readable.from([bytes.subarray(0, 5), bytes.subarray(5)]), offset: 0 };
  }

  async close(): Promise<void> {}
}

class FileUnpacker implements LayerUnpacker {
  async unpack(source: Readable, _compression: string, targetDir: string): Promise<UnpackResult> {
    const chunks: Buffer[] = [];
    for await (const c of source) chunks.push(c as Buffer);
    const bytes = Buffer.concat(chunks);
    await writeFile(join(targetDir, "content"), bytes);
    return { diffId: digestOf(bytes), uncompressedSize: bytes.length, entries: 1 };
  }
}

class FakeNetwork implements PodNetwork {
  failWith: Error | undefined;
  readonly calls: string[] = [];
  async status() {
    return { ready: true };
  }
  async setUp(request: PodNetworkRequest): Promise<PodNetworkAttachment> {
    this.calls.push(`setUp ${request.podId}`);
    await new Promise((r) => setTimeout(r, 20));
    if (this.failWith) throw this.failWith;
    return { netnsPath: "/run/netns/x", nic: { name: "eth0", mac: "02:00:00:00:00:01", mtu: 1500, addresses: [] }, routes: [], tapFd: 99, ips: ["10.88.0.5"] };
  }
  async find(podId: string) {
    this.calls.push(`find ${podId}`);
    return undefined;
  }
  async list() {
    this.calls.push("list");
    return ["p1"];
  }
  async tearDown(podId: string) {
    this.calls.push(`tearDown ${podId}`);
  }
}

describe("metrics: phase families", () => {
  let registry: Registry;
  let phases: PhaseMetrics;

  beforeEach(() => {
    registry = new Registry();
    phases = new PhaseMetrics(registry);
  });

  const samples = async () => parseExposition(await registry.metrics());

  it("observes each boot phase and the whole boot, in seconds", async () => {
    const vm = { id: "p1", consoleLog: "/nonexistent", exited: new Promise<never>(() => {}) };
    phases.booted(vm, { prepareMs: 40, vmStartMs: 900, agentMs: 2600, sandboxMs: 300 });
    phases.booted(vm, { prepareMs: 60, vmStartMs: 1100, agentMs: 3400, sandboxMs: 500 });
    phases.reattached(vm);
    const s = await samples();
    assert.equal(valueOf(s, "vmpod_vm_boot_seconds_count"), 2);
    assert.ok(Math.abs((valueOf(s, "vmpod_vm_boot_seconds_sum") ?? 0) - 8.9) < 1e-9);
    assert.equal(valueOf(s, "vmpod_vm_boot_phase_seconds_count", { phase: "agent_connect" }), 2);
    assert.ok(Math.abs((valueOf(s, "vmpod_vm_boot_phase_seconds_sum", { phase: "agent_connect" }) ?? 0) - 6) < 1e-9);
    assert.ok(Math.abs((valueOf(s, "vmpod_vm_boot_phase_seconds_sum", { phase: "prepare" }) ?? 0) - 0.1) < 1e-9);
    assert.equal(valueOf(s, "vmpod_vm_boot_phase_seconds_bucket", { phase: "vm_start", le: "1" }), 1);
    assert.equal(valueOf(s, "vmpod_vm_boot_phase_seconds_bucket", { phase: "vm_start", le: "2" }), 2);
    assert.equal(valueOf(s, "vmpod_vm_boot_phase_seconds_count", { phase: "sandbox" }), 2);
  });

  it("times network set-ups by outcome, and passes every call through", async () => {
    const inner = new FakeNetwork();
    const network = new TimedPodNetwork(inner, (seconds, outcome) => phases.networkSetUp(seconds, outcome));
    const request = { podId: "p1", name: "a", namespace: "n", uid: "u", portMappings: [] };
    assert.deepEqual((await network.setUp(request)).ips, ["10.88.0.5"]);
    inner.failWith = new VmpodError("Internal", "plugin bridge failed");
    await assert.rejects(network.setUp(request), /plugin bridge failed/);
    assert.deepEqual(await network.list(), ["p1"]);
    assert.equal(await network.find("p1"), undefined);
    await network.tearDown("p1");
    assert.deepEqual((await network.status()).ready, true);
    assert.deepEqual(inner.calls, ["setUp p1", "setUp p1", "list", "find p1", "tearDown p1"]);
    const s = await samples();
    assert.equal(valueOf(s, "vmpod_network_setup_seconds_count", { outcome: "ok" }), 1);
    assert.equal(valueOf(s, "vmpod_network_setup_seconds_count", { outcome: "error" }), 1);
    const took = valueOf(s, "vmpod_network_setup_seconds_sum", { outcome: "ok" }) ?? 0;
    assert.ok(took >= 0.015 && took < 5, `set-up took ${took} s`);
  });

  describe("image pulls, through the image service", () => {
    let root: string;
    beforeEach(async () => {
      root = await mkdtemp(join(tmpdir(), "vmpod-metrics-unit-"));
    });
    afterEach(async () => {
      await rm(root, { recursive: true, force: true });
    });

    it("counts the bytes received and times each pull by outcome", async () => {
      const images = new OneImageRegistry();
      const service = await LocalImageService.open({ config: { ...defaultConfig("/nonexistent").image, root }, registry: images, unpacker: new FileUnpacker(), logger: silentLogger, observer: phases });
      // Two callers of one pull: one pull.
      await Promise.all([service.pull("app:1"), service.pull("app:1")]);
      let s = await samples();
      const first = images.manifest.length + images.config.length + images.layer.length;
      assert.equal(valueOf(s, "vmpod_image_pull_bytes_total"), first);
      assert.equal(valueOf(s, "vmpod_image_pull_seconds_count", { outcome: "ok" }), 1);
      // Again: only the manifest is fetched, the rest is held.
      await service.pull("app:1");
      await assert.rejects(service.pull("other:2"), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound");
      s = await samples();
      assert.equal(valueOf(s, "vmpod_image_pull_bytes_total"), first + images.manifest.length);
      assert.equal(valueOf(s, "vmpod_image_pull_seconds_count", { outcome: "ok" }), 2);
      assert.equal(valueOf(s, "vmpod_image_pull_seconds_count", { outcome: "error" }), 1);
    });
  });

  it("shows every family, and every label of each, before anything happened", async () => {
    const s = await samples();
    for (const phase of ["prepare", "vm_start", "agent_connect", "sandbox"]) assert.equal(valueOf(s, "vmpod_vm_boot_phase_seconds_count", { phase }), 0);
    for (const outcome of ["ok", "error"]) {
      assert.equal(valueOf(s, "vmpod_network_setup_seconds_count", { outcome }), 0);
      assert.equal(valueOf(s, "vmpod_image_pull_seconds_count", { outcome }), 0);
    }
    assert.equal(valueOf(s, "vmpod_vm_boot_seconds_count"), 0);
    assert.equal(valueOf(s, "vmpod_image_pull_bytes_total"), 0);
  });

  it("tells several VM observers of each VM, in order", () => {
    const told: string[] = [];
    const watcher = (name: string) => ({ booted: (vm: { id: string }) => told.push(`${name} booted ${vm.id}`), reattached: (vm: { id: string }) => told.push(`${name} reattached ${vm.id}`) });
    const vm = { id: "p1", consoleLog: "/nonexistent", exited: new Promise<never>(() => {}) };
    const both = vmObservers(watcher("a"), undefined, watcher("b"));
    both.booted(vm, { prepareMs: 1, vmStartMs: 1, agentMs: 1, sandboxMs: 1 });
    both.reattached(vm);
    assert.deepEqual(told, ["a booted p1", "b booted p1", "a reattached p1", "b reattached p1"]);
    vmObservers().booted(vm, { prepareMs: 1, vmStartMs: 1, agentMs: 1, sandboxMs: 1 });
  });
});
