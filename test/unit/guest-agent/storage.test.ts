import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, readFile, readdir, realpath, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { ErrnoError } from "../../../guest/agent/errno.js";
import { Sandbox, type SandboxDeps } from "../../../guest/agent/sandbox.js";
import { localMode, parseMountOptions, StorageRegistry, type StorageSpec } from "../../../guest/agent/storage.js";
import { parseOverlayOptions } from "../../../guest/agent/storage-overlay.js";
import { parseScsiAddress } from "../../../guest/agent/storage-scsi.js";

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

  it("tries a virtio-fs mount again every few milliseconds, without backing off", async () => {
    const libc = new FakeMounts();
    libc.failures = 12;
    const pauses: number[] = [];
    const registry = new StorageRegistry(libc, silentLogger, { mountRetryMs: 60_000, pause: async (ms) => void pauses.push(ms) });
    await registry.acquire(virtiofs(join(dir, "tight")));
    assert.equal(libc.calls.length, 13);
    assert.equal(pauses.length, 12);
    assert.ok(pauses.every((ms) => ms > 0 && ms <= 10), `pauses: ${pauses.join(", ")}`);
    await registry.releaseAll();
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
    const mp = join(dir, "made/scratch");
    await registry.acquire(local(mp, ["mode=0700"]));
    assert.equal((await stat(mp)).mode & 0o7777, 0o700);
    await writeFile(join(mp, "file"), "x");
    await registry.release(mp);
    await assert.rejects(stat(join(dir, "made")), "with the parent made for it");
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

  describe("scsi disks and overlays", () => {
    const invalid = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";
    const scsi = (source: string, mountPoint: string): StorageSpec => ({ driver: "scsi", source, fstype: "erofs", options: ["ro"], mountPoint });
    const overlay = (mountPoint: string, lowers: string[], flags: string[] = []): StorageSpec => ({
      driver: "overlayfs",
      source: "overlay",
      fstype: "overlay",
      options: [`lowerdir=${lowers.join(":")}`, ...flags],
      mountPoint,
    });
    let sys: string;
    let dev: string;
    let scratch: string;
    const registryWith = (libc: FakeMounts, deviceWaitMs = 2000) => new StorageRegistry(libc, silentLogger, { sysfs: sys, dev, scratchDir: scratch, deviceWaitMs });
    /** What the kernel shows once the disk at 0:TARGET:LUN is probed as `disk`. */
    const plugDisk = async (target: number, lun: number, disk: string) => {
      await mkdir(join(sys, "bus/scsi/devices", `0:0:${target}:${lun}`, "block", disk), { recursive: true });
      await writeFile(join(dev, disk), "");
    };

    beforeEach(async () => {
      sys = join(dir, "sys");
      dev = join(dir, "dev");
      scratch = join(dir, "scratch");
      await mkdir(join(sys, "bus/scsi/devices"), { recursive: true });
      await mkdir(join(sys, "class/scsi_host/host0"), { recursive: true });
      await writeFile(join(sys, "class/scsi_host/host0/scan"), "");
      await mkdir(dev);
    });

    it("checks scsi storages: a TARGET:LUN address and a file system type", () => {
      assert.deepEqual(parseScsiAddress("0:3"), { target: 0, lun: 3 });
      assert.deepEqual(parseScsiAddress("255:16383"), { target: 255, lun: 16383 });
      for (const bad of ["3", "0:0:3", "256:0", "0:16384", "a:b", "", " 0:1", "0:1\n"]) {
        assert.throws(() => StorageRegistry.validate(scsi(bad, "/run/l0")), invalid, bad);
      }
      assert.throws(() => StorageRegistry.validate({ ...scsi("0:1", "/run/l0"), fstype: "" }), invalid);
      assert.throws(() => StorageRegistry.validate({ ...scsi("0:1", "/run/l0"), fstype: "erofs,x" }), invalid);
      StorageRegistry.validate(scsi("0:1", "/run/l0"));
    });

    it("checks overlayfs storages: lower directories given, upper and work made by the agent, mount flags only", () => {
      assert.deepEqual(parseOverlayOptions(["lowerdir=/l/1:/l/0", "nodev", "ro"]), { lowerDirs: ["/l/1", "/l/0"], flags: ["nodev", "ro"] });
      const bad: string[][] = [
        [],
        ["nodev"],
        ["lowerdir="],
        ["lowerdir=/l/1::/l/0"],
        ["lowerdir=l/0"],
        ["lowerdir=/l/../0"],
        ["lowerdir=/l/a,b"],
        ["lowerdir=/l/0", "lowerdir=/l/1"],
        ["lowerdir=/l/0", "upperdir=/tmp/u"],
        ["lowerdir=/l/0", "workdir=/tmp/w"],
        ["lowerdir=/l/0", "index=on"],
      ];
      for (const options of bad) {
        assert.throws(() => StorageRegistry.validate({ driver: "overlayfs", source: "overlay", fstype: "overlay", options, mountPoint: "/run/c/rootfs" }), invalid, options.join(" "));
      }
      assert.throws(() => StorageRegistry.validate({ ...overlay("/run/c/rootfs", ["/l/0"]), fstype: "ext4" }), invalid);
      assert.throws(() => StorageRegistry.validate(overlay("/run/c/rootfs", ["/run/c/rootfs/x"])), invalid, "a lower inside the overlay");
      StorageRegistry.validate(overlay("/run/c/rootfs", ["/l/1", "/l/0"]));
      StorageRegistry.validate({ ...overlay("/run/c/rootfs", ["/l/0"]), fstype: "" });
    });

    it("waits for the disk at the address to appear, mounts it read-only with its type, and unmounts it", async () => {
      const libc = new FakeMounts();
      const registry = registryWith(libc);
      const mp = join(dir, "layers/0");
      // Another disk, and one on another channel, are not it.
      await mkdir(join(sys, "bus/scsi/devices/0:0:0:30/block/sdz"), { recursive: true });
      await mkdir(join(sys, "bus/scsi/devices/0:1:0:3/block/sdy"), { recursive: true });
      setTimeout(() => void plugDisk(0, 3, "sdb"), 150);
      await registry.acquire(scsi("0:3", mp));
      assert.deepEqual(libc.calls, [`mount ${join(dev, "sdb")} ${mp} erofs 1 `]);
      await registry.release(mp);
      assert.deepEqual(libc.calls.slice(1), [`umount ${mp} 0`]);
      await assert.rejects(stat(mp));
    });

    it("asks the controllers to scan for a disk slow to appear, and gives up with Unavailable", async () => {
      const libc = new FakeMounts();
      const registry = registryWith(libc, 1300);
      const mp = join(dir, "layers/9");
      await assert.rejects(registry.acquire(scsi("1:9", mp)), (err: unknown) => err instanceof VmpodError && err.kind === "Unavailable" && /1:9/.test(err.message));
      assert.equal(await readFile(join(sys, "class/scsi_host/host0/scan"), "utf8"), "0 1 9");
      assert.deepEqual(libc.calls, []);
      await assert.rejects(stat(mp), "the mount point it made is gone");
    });

    it("mounts an overlay over acquired layers, top first, with an upper layer of its own that goes with it", async () => {
      const libc = new FakeMounts();
      const registry = registryWith(libc);
      await plugDisk(0, 0, "sda");
      await plugDisk(0, 1, "sdb");
      const l0 = join(dir, "layers/0");
      const l1 = join(dir, "layers/1");
      const rootfs = join(dir, "c1/rootfs");
      await registry.acquire(scsi("0:0", l0));
      await registry.acquire(scsi("0:1", l1));
      await chmod(l1, 0o751);
      await mkdir(join(l0, "sub"));
      await registry.acquire(overlay(rootfs, [l1, join(l0, "sub")], ["nodev"]));
      const real = await realpath(dir);
      const upper = join(scratch, "1/upper");
      assert.equal(libc.calls[2], `mount overlay ${rootfs} overlay 4 lowerdir=${real}/layers/1:${real}/layers/0/sub,upperdir=${upper},workdir=${join(scratch, "1/work")}`);
      assert.equal((await stat(upper)).mode & 0o7777, 0o751, "the merged root has the top layer's mode");
      await writeFile(join(upper, "written"), "x");
      await registry.release(rootfs);
      await registry.release(l1);
      await registry.release(l0);
      assert.deepEqual(libc.calls.slice(3), [`umount ${rootfs} 0`, `umount ${l1} 0`, `umount ${l0} 0`]);
      assert.deepEqual(await readdir(scratch), [], "the upper and work directories are gone");
      assert.ok(!(await readdir(dir)).includes("c1"), "the overlay's mount point and the parent made for it are gone");
      // (layers/0 holds sub: the fake mount left it on disk, so it stays.)
      assert.deepEqual(await readdir(join(dir, "layers")), ["0"]);
    });

    it("refuses an overlay whose lower directory is not in an acquired storage, leaving nothing", async () => {
      const libc = new FakeMounts();
      const registry = registryWith(libc);
      const stray = join(dir, "stray");
      await mkdir(stray);
      const rootfs = join(dir, "c1/rootfs");
      await assert.rejects(registry.acquire(overlay(rootfs, [stray])), invalid);
      await assert.rejects(registry.acquire(overlay(rootfs, [join(dir, "missing")])), invalid);
      assert.deepEqual(libc.calls, []);
      await assert.rejects(stat(rootfs));
      assert.deepEqual(await readdir(scratch).catch(() => []), []);
    });

    it("shares a layer between two containers' overlays, mounting it once and unmounting it after the last", async () => {
      const libc = new FakeMounts();
      const registry = registryWith(libc);
      await plugDisk(0, 0, "sda");
      const l0 = join(dir, "layers/0");
      const [a, b] = await Promise.all([registry.acquire(scsi("0:0", l0)), registry.acquire(scsi("0:0", l0))]);
      assert.equal(a, b);
      assert.equal(libc.calls.filter((c) => c.startsWith("mount")).length, 1, "two acquires at once mount it once");
      await registry.acquire(overlay(join(dir, "c1/rootfs"), [l0]));
      await registry.acquire(overlay(join(dir, "c2/rootfs"), [l0]));
      assert.notEqual(libc.calls[1]?.split("upperdir=")[1], libc.calls[2]?.split("upperdir=")[1], "each overlay has its own upper layer");
      await assert.rejects(registry.acquire({ ...scsi("0:0", l0), fstype: "ext4" }), (err: unknown) => err instanceof VmpodError && err.kind === "AlreadyExists");
      await registry.release(join(dir, "c1/rootfs"));
      await registry.release(l0);
      assert.ok(!libc.calls.includes(`umount ${l0} 0`), "still used by the second container");
      await registry.releaseAll();
      assert.deepEqual(libc.calls.slice(-2), [`umount ${join(dir, "c2/rootfs")} 0`, `umount ${l0} 0`], "the overlay before its layer");
    });

    it("releases, in reverse, what a CreateContainer acquired before it failed", async () => {
      const libc = new FakeMounts();
      const storages = registryWith(libc);
      await plugDisk(0, 0, "sda");
      await plugDisk(0, 1, "sdb");
      const deps = { storages, log: silentLogger } as unknown as SandboxDeps;
      const sandbox = await Sandbox.create(deps, { id: "pod", hostname: "", dns: [], storages: [] });
      const l0 = join(dir, "layers/0");
      const l1 = join(dir, "layers/1");
      const rootfs = join(dir, "c1/rootfs");
      // No process: refused once the storages are in place.
      await assert.rejects(
        sandbox.createContainer({ id: "c1", execId: "", storages: [scsi("0:0", l0), scsi("0:1", l1), overlay(rootfs, [l1, l0])], config: { ociVersion: "1.1.0", root: { path: rootfs }, mounts: [] } }),
        invalid,
      );
      assert.deepEqual(
        libc.calls.map((c) => c.split(" ").slice(0, 2).join(" ")),
        [`mount ${join(dev, "sda")}`, `mount ${join(dev, "sdb")}`, "mount overlay", `umount ${rootfs}`, `umount ${l1}`, `umount ${l0}`],
      );
      assert.deepEqual(storages.mountPoints, []);
      // A storage that fails half-way releases the ones before it.
      libc.calls.length = 0;
      await assert.rejects(sandbox.createContainer({ id: "c2", execId: "", storages: [scsi("0:0", l0), overlay(rootfs, [join(dir, "elsewhere")])], config: { ociVersion: "1.1.0", mounts: [] } }), invalid);
      assert.deepEqual(libc.calls.map((c) => c.split(" ")[0]), ["mount", "umount"]);
      assert.deepEqual(storages.mountPoints, []);
    });
  });
});
