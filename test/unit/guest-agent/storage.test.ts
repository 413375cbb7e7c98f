import assert from "node:assert/strict";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { ErrnoError } from "../../../guest/agent/errno.js";
import { localMode, parseMountOptions, StorageRegistry, type StorageSpec } from "../../../guest/agent/storage.js";

const ENODEV = 19;
const EBUSY = 16;

class FakeMounts {
  calls: string[] = [];
  failures = 0;
  busy = false;
  mount(source: string, target: string, fstype: string, flags: number, data: string): void {
    this.calls.push(`mount ${source} ${target} ${fstype} ${flags} ${data}`);
    if (this.failures-- > 0) throw new ErrnoError("mount", ENODEV);
  }
  umount(target: string, flags = 0): void {
    this.calls.push(`umount ${target} ${flags}`);
    if (this.busy && flags === 0) throw new ErrnoError("umount", EBUSY);
  }
}

describe("guest agent: storages", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-storage-"));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const virtiofs = (mountPoint: string, options: string[] = []): StorageSpec => ({ driver: "virtio-fs", source: "vmpod-share", fstype: "", options, mountPoint });
  const local = (mountPoint: string, options: string[] = []): StorageSpec => ({ driver: "local", source: "", fstype: "", options, mountPoint });

  it("splits mount options into flags and the file system's data", () => {
    assert.deepEqual(parseMountOptions(["ro", "nosuid", "nodev", "dax", "cache=auto", "rw"]), { flags: 1 | 2 | 4, data: "dax,cache=auto" });
    assert.deepEqual(parseMountOptions([]), { flags: 0, data: "" });
    assert.equal(localMode(["mode=0750"]), 0o750);
    assert.equal(localMode([]), 0o777);
    assert.throws(() => localMode(["mode=9"]), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument");
  });

  it("mounts virtio-fs by tag, retrying until the device appears, and unmounts it once its last user is gone", async () => {
    const libc = new FakeMounts();
    libc.failures = 2;
    const registry = new StorageRegistry(libc, silentLogger, { mountRetryMs: 5000 });
    const mp = join(dir, "shared");
    await registry.acquire(virtiofs(mp, ["ro", "dax"]));
    assert.deepEqual(libc.calls, Array(3).fill(`mount vmpod-share ${mp} virtiofs 1 dax`));
    await registry.acquire(virtiofs(mp, ["ro", "dax"]));
    await registry.release(mp);
    assert.equal(libc.calls.length, 3, "still in use");
    await registry.release(mp);
    assert.equal(libc.calls[3], `umount ${mp} 0`);
    await assert.rejects(stat(mp), "the directory it made is gone");
  });

  it("gives up mounting with Unavailable after the time allowed", async () => {
    const libc = new FakeMounts();
    libc.failures = 1000;
    const registry = new StorageRegistry(libc, silentLogger, { mountRetryMs: 100 });
    await assert.rejects(registry.acquire(virtiofs(join(dir, "never"))), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable");
    await assert.rejects(stat(join(dir, "never")));
  });

  it("detaches a busy mount", async () => {
    const libc = new FakeMounts();
    libc.busy = true;
    const registry = new StorageRegistry(libc, silentLogger);
    const mp = join(dir, "busy");
    await registry.acquire(virtiofs(mp));
    await registry.releaseAll();
    assert.deepEqual(libc.calls.slice(1), [`umount ${mp} 0`, `umount ${mp} 2`]);
  });

  it("waits for the init's modules-ready marker before a virtio-fs mount", async () => {
    const libc = new FakeMounts();
    const marker = join(dir, "modules-ready");
    const registry = new StorageRegistry(libc, silentLogger, { modulesReady: marker });
    const acquired = registry.acquire(virtiofs(join(dir, "after-modules")));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(libc.calls, []);
    await writeFile(marker, "");
    await acquired;
    assert.equal(libc.calls.length, 1);
    await registry.releaseAll();
  });

  it("makes a local storage with its mode and removes it with its contents", async () => {
    const registry = new StorageRegistry(new FakeMounts(), silentLogger);
    const mp = join(dir, "scratch");
    await registry.acquire(local(mp, ["mode=0700"]));
    assert.equal((await stat(mp)).mode & 0o7777, 0o700);
    await writeFile(join(mp, "file"), "x");
    await registry.release(mp);
    await assert.rejects(stat(mp));
  });

  it("refuses unknown drivers, relative or unnormalized mount points, and a second storage on the same mount point", async () => {
    const registry = new StorageRegistry(new FakeMounts(), silentLogger);
    const invalid = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";
    await assert.rejects(registry.acquire({ ...local(join(dir, "a")), driver: "9p" }), invalid);
    await assert.rejects(registry.acquire(local("rel/dir")), invalid);
    await assert.rejects(registry.acquire(local(`${dir}/x/../y`)), invalid);
    await assert.rejects(registry.acquire(local("/")), invalid);
    await assert.rejects(registry.acquire({ ...virtiofs(join(dir, "v")), source: "" }), invalid);
    await registry.acquire(local(join(dir, "same")));
    await assert.rejects(registry.acquire(virtiofs(join(dir, "same"))), (err: unknown) => err instanceof VmpodError && err.kind === "AlreadyExists");
    await registry.releaseAll();
  });
});
