/**
 * The image service against a real registry (Debian's docker-registry on a
 * loopback port) with the real registry client and unpacker: every image
 * kind the fixture pushes, mirrors, Basic and token authentication, a
 * corrupt blob, an interrupted download, hostile layers, removal while in
 * use, ImageFsInfo, and a restart.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { exists } from "../../../src/common/fs.js";
import { silentLogger } from "../../../src/common/log.js";
import { overlayMount, unmountTree } from "../../../src/common/mount.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import type { ImageConfig, RegistryHostConfig } from "../../../src/config/types.js";
import { openImageService, type OpenedImageService } from "../../../src/image/index.js";
import type { LocalImageService } from "../../../src/image/service.js";
import type { ImageRecord } from "../../../src/image/types.js";
import { assertNothingLeft } from "../../helpers/leaks.js";
import { pushBusybox, pushDockerSchema2, pushHostile, pushIndex, pushMultiLayer, pushZstd, type PushedImage } from "../../helpers/registry/images.js";
import type { ExpectedView } from "../../helpers/registry/layer.js";
import { startRegistry, type RunningRegistry } from "../../helpers/registry/server.js";

const CREDS = { username: "puller", password: "pass word" };

function isKind(kind: string, pattern?: RegExp) {
  return (e: unknown) => e instanceof VmpodError && e.kind === kind && (pattern === undefined || pattern.test(e.message));
}

describe("image service with a real registry", function () {
  this.timeout(120_000);
  let registry: RunningRegistry;
  let root: string;
  const opened: OpenedImageService[] = [];

  async function open(overrides: Partial<ImageConfig> = {}, registries: Record<string, RegistryHostConfig> = {}): Promise<LocalImageService> {
    const o = await openImageService({ ...defaultConfig("/nonexistent").image, root: join(root, "store"), registries, ...overrides }, silentLogger);
    opened.push(o);
    return o.service;
  }

  /** Mounts the image's layers as a container would see them, runs `check` on the merged tree, unmounts. */
  async function withMerged<T>(service: LocalImageService, record: ImageRecord, check: (dir: string) => Promise<T>): Promise<T> {
    const holder = `view-${Math.random().toString(16).slice(2)}`;
    const rootfs = await service.use(record.id, holder);
    const target = join(root, "merged", holder);
    await mkdir(target, { recursive: true });
    try {
      await overlayMount(rootfs.layers.map((l) => l.dir).reverse(), rootfs.upperDir, rootfs.workDir, target);
      try {
        return await check(target);
      } finally {
        await unmountTree(target);
      }
    } finally {
      await rm(target, { recursive: true, force: true });
      await service.release(holder);
    }
  }

  async function assertView(dir: string, files: ExpectedView, absent: readonly string[]): Promise<void> {
    for (const [path, want] of files) {
      const st = await lstat(join(dir, path));
      if (want.type === "dir") assert.ok(st.isDirectory(), `${path} is a directory`);
      if (want.type === "symlink") {
        assert.ok(st.isSymbolicLink(), `${path} is a symlink`);
        assert.equal(await readlink(join(dir, path)), want.target);
      }
      if (want.type === "file") {
        assert.ok(st.isFile(), `${path} is a file`);
        if (want.sha256 !== undefined) assert.equal(createHash("sha256").update(await readFile(join(dir, path))).digest("hex"), want.sha256, `${path} content`);
      }
      if (want.mode !== undefined) assert.equal(st.mode & 0o7777, want.mode, `${path} mode`);
    }
    for (const path of absent) assert.equal(await exists(join(dir, path)), false, `${path} is hidden by a whiteout`);
  }

  before(async () => {
    registry = await startRegistry({ proxy: true });
  });
  after(async () => {
    await registry?.stop();
  });
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-pull-"));
  });
  afterEach(async () => {
    for (const o of opened.splice(0)) await o.close();
    registry.proxy?.reset();
    await rm(join(root, "store"), { recursive: true, force: true });
    await rm(join(root, "merged"), { recursive: true, force: true });
    await assertNothingLeft(root);
    await rm(root, { recursive: true, force: true });
  });

  it("pulls by tag and by digest, and the merged tree is the image's", async () => {
    const image = await pushBusybox(registry, { repository: "pull/busybox", tag: "1" });
    const service = await open();
    const record = await service.pull(image.reference);
    assert.equal(record.id, image.configDigest);
    assert.deepEqual(record.layers, image.diffIds);
    assert.equal(record.size, image.size);
    assert.deepEqual(record.repoTags, [`${image.host}/pull/busybox:1`]);
    assert.deepEqual(record.config.cmd, ["/bin/sh"]);
    await withMerged(service, record, (dir) => assertView(dir, image.files, image.absent));
    const byDigest = await service.pull(image.digestReference);
    assert.equal(byDigest.id, record.id);
    assert.deepEqual(service.find(image.digestReference)?.id, record.id);
  });

  it("applies whiteouts and opaque directories of a multi-layer image", async () => {
    const image = await pushMultiLayer(registry, { repository: "pull/layered", tag: "1" });
    assert.ok(image.absent.length > 0);
    const service = await open();
    const record = await service.pull(image.reference);
    assert.equal(record.layers.length, 3);
    await withMerged(service, record, (dir) => assertView(dir, image.files, image.absent));
  });

  for (const format of ["oci", "docker"] as const) {
    it(`chooses the platform from ${format === "oci" ? "an OCI index" : "a Docker manifest list"}`, async () => {
      const index = await pushIndex(registry, { format, repository: `pull/multi-${format}`, tag: "1" });
      const amd = index.entries.find((e) => e.platform.architecture === "amd64");
      const arm = index.entries.find((e) => e.platform.architecture === "arm64");
      assert.ok(amd && arm);
      const service = await open();
      const record = await service.pull(index.reference);
      assert.equal(record.id, amd.image.configDigest);
      assert.deepEqual(record.repoDigests, [`${index.host}/pull/multi-${format}@${index.indexDigest}`]);
      const armService = await open({ platform: "linux/arm64/v8", root: join(root, "store", "arm") });
      const armRecord = await armService.pull(index.reference);
      assert.equal(armRecord.id, arm.image.configDigest);
      assert.equal(armRecord.platform.architecture, "arm64");
    });
  }

  it("pulls a zstd layer and a Docker schema 2 image", async () => {
    const zstd = await pushZstd(registry, { repository: "pull/zstd", tag: "1" });
    const docker = await pushDockerSchema2(registry, { repository: "pull/docker", tag: "1" });
    const service = await open();
    const z = await service.pull(zstd.reference);
    await withMerged(service, z, async (dir) => assert.equal(await readFile(join(dir, "etc/zstd-marker"), "utf8"), "zstd layer\n"));
    const d = await service.pull(docker.reference);
    assert.equal(d.id, docker.configDigest);
    await withMerged(service, d, (dir) => assertView(dir, docker.files, docker.absent));
  });

  it("pulls through a mirror, and from the upstream when the mirror fails", async () => {
    const image = await pushBusybox(registry, { repository: "pull/mirrored", tag: "1" });
    const proxy = registry.proxy;
    assert.ok(proxy);
    const service = await open({}, { [registry.host]: { mirrors: [proxy.url], insecureSkipVerify: false, caFiles: [] } });
    await service.pull(image.reference);
    assert.ok(proxy.count(/\/v2\/pull\/mirrored\/manifests\//) >= 1, "the mirror served the manifest");
    assert.ok(proxy.count(/\/v2\/pull\/mirrored\/blobs\//) >= 2, "the mirror served config and layer");

    proxy.reset();
    proxy.failNext(100);
    const other = await open({ root: join(root, "store", "second") }, { [registry.host]: { mirrors: [proxy.url], insecureSkipVerify: false, caFiles: [] } });
    const record = await other.pull(image.reference);
    assert.equal(record.id, image.configDigest);
  });

  it("fails a pull whose blob is corrupt, keeping nothing of it", async () => {
    const image = await pushBusybox(registry, { repository: "pull/corrupt", tag: "1" });
    const proxy = registry.proxy;
    assert.ok(proxy);
    const layer = image.layers[0];
    assert.ok(layer);
    proxy.corruptBlob(layer.digest);
    const service = await open();
    await assert.rejects(service.pull(`${proxy.host}/pull/corrupt:1`), isKind("InvalidArgument", /digest|corrupt/));
    const store = join(root, "store");
    for (const dir of ["layers", "ingest", "images", "tmp", "blobs/sha256"]) assert.deepEqual(await readdir(join(store, dir)), [], `${dir} is empty`);
  });

  it("resumes a download cut halfway", async () => {
    const image = await pushBusybox(registry, { repository: "pull/cut", tag: "1" });
    const proxy = registry.proxy;
    assert.ok(proxy);
    const layer = image.layers[0];
    assert.ok(layer);
    const half = Math.floor(layer.size / 2);
    proxy.cutBlob(layer.digest, half);
    const service = await open();
    await assert.rejects(service.pull(`${proxy.host}/pull/cut:1`), isKind("Unavailable"));
    const record = await service.pull(`${proxy.host}/pull/cut:1`);
    assert.equal(record.id, image.configDigest);
    const ranged = proxy.requests.filter((r) => r.path.includes(layer.digest) && r.range !== undefined);
    assert.equal(ranged.length, 1, "the second attempt asked for the rest only");
    // What arrived before the cut but was not yet written is fetched again.
    const start = Number(/^bytes=(\d+)-$/.exec(ranged[0]?.range ?? "")?.[1]);
    assert.ok(start > 0 && start <= half, `resumed from ${start}, cut at ${half}`);
  });

  for (const kind of ["dot-dot", "symlink-escape", "hardlink-escape"] as const) {
    it(`refuses a hostile layer (${kind}) and writes nothing outside the store`, async () => {
      const image = await pushHostile(registry, kind, { repository: `pull/hostile-${kind}`, tag: "1" });
      const service = await open();
      await assert.rejects(service.pull(image.reference), isKind("InvalidArgument"));
      const store = join(root, "store");
      assert.deepEqual(await readdir(join(store, "layers")), []);
      assert.deepEqual(await readdir(join(store, "tmp")), []);
      assert.deepEqual((await readdir(root)).sort(), ["store"], "nothing beside the store");
      assert.equal(await exists(join(store, "evil")), false);
      assert.equal(await exists("/tmp/evil"), false);
    });
  }

  it("removes an image only when no container uses it; ImageFsInfo follows", async () => {
    const image = await pushMultiLayer(registry, { repository: "pull/remove", tag: "1" });
    const service = await open();
    const empty = await service.fsInfo();
    const record = await service.pull(image.reference);
    const pulled = await service.fsInfo();
    assert.ok(pulled.images.usedBytes > empty.images.usedBytes + 500_000, `${pulled.images.usedBytes} > ${empty.images.usedBytes}`);
    assert.ok(pulled.images.inodesUsed > empty.images.inodesUsed + 20);
    await service.use(record.id, "c1");
    await assert.rejects(service.remove(image.reference), isKind("FailedPrecondition", /in use by container c1/));
    await service.release("c1");
    await service.remove(image.reference);
    assert.equal(service.list().length, 0);
    const removed = await service.fsInfo();
    assert.equal(removed.images.usedBytes, empty.images.usedBytes);
    assert.equal(removed.images.inodesUsed, empty.images.inodesUsed);
  });

  it("pulls the configured sandbox image once, pinned, and describes it for verbose status", async () => {
    const image = await pushBusybox(registry, { repository: "pull/pause", tag: "3" });
    const proxy = registry.proxy;
    assert.ok(proxy);
    const service = await open({ sandboxImage: `${proxy.host}/pull/pause:3` });
    const record = await service.ensureSandboxImage();
    assert.ok(proxy.requests.length > 0, "pulled through the proxy");
    assert.equal(record.pinned, true);
    assert.equal(record.id, image.configDigest);
    const manifestsBefore = proxy.requests.length;
    assert.equal((await service.ensureSandboxImage()).id, record.id);
    assert.equal(proxy.requests.length, manifestsBefore, "held and pinned: not pulled again");
    const described = await service.describe(record.id);
    assert.equal((described.config as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids[0], image.diffIds[0]);
    assert.equal((described.manifest as { config: { digest: string } }).config.digest, image.configDigest);
  });

  it("keeps the store across a restart", async () => {
    const image = await pushBusybox(registry, { repository: "pull/restart", tag: "1" });
    const first = await open();
    const record = await first.pull(image.reference);
    await first.use(record.id, "c1");
    const again = await open();
    assert.deepEqual(again.list().map((r) => r.id), [record.id]);
    assert.deepEqual(again.holders(record.id), ["c1"]);
    await withMerged(again, record, (dir) => assertView(dir, image.files, image.absent));
    await again.release("c1");
  });
});

describe("image service with an authenticating registry", function () {
  this.timeout(120_000);
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-pull-auth-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  for (const mode of ["basic", "token"] as const) {
    it(`pulls with ${mode} auth, and refuses wrong credentials clearly`, async () => {
      const registry = await startRegistry({ auth: mode === "basic" ? { basic: CREDS } : { token: CREDS } });
      const o = await openImageService({ ...defaultConfig("/nonexistent").image, root: join(root, "store") }, silentLogger);
      try {
        const image: PushedImage = await pushBusybox(registry, { repository: "auth/busybox", tag: "1" });
        await assert.rejects(o.service.pull(image.reference), isKind("FailedPrecondition", /auth/i));
        await assert.rejects(
          o.service.pull(image.reference, { credentials: { username: CREDS.username, password: "wrong" } }),
          (e: unknown) => isKind("FailedPrecondition", /auth/i)(e) && !String((e as Error).message).includes("wrong"),
        );
        const before = registry.tokenServer?.requests.length ?? 0;
        const record = await o.service.pull(image.reference, { credentials: CREDS });
        assert.equal(record.id, image.configDigest);
        if (registry.tokenServer) assert.equal(registry.tokenServer.requests.length - before, 1, "one token served the manifest, config and layer");
        const auth = Buffer.from(`${CREDS.username}:${CREDS.password}`).toString("base64");
        await o.service.remove(record.id);
        assert.equal((await o.service.pull(image.reference, { credentials: { auth } })).id, image.configDigest);
      } finally {
        await o.close();
        await registry.stop();
      }
    });
  }
});
