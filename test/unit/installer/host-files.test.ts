/**
 * The installer's host-side steps for real, in a temporary host root: what
 * lands where, with which modes; a repeat that changes nothing; an upgrade
 * swapped in whole; the operator's configuration left alone; and an
 * uninstall that leaves the root exactly as it was.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, readdir, readlink, rm, stat, writeFile, lstat, mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kindOf } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { DEPLOY_FILES, installHostFiles, removeHostFiles } from "../../../src/installer/host-files.js";
import { HostRoot } from "../../../src/installer/layout.js";
import { readManifest } from "../../../src/installer/manifest.js";
import type { PayloadSource } from "../../../src/installer/payload.js";
import { makeHostRoot, makeSourcePackage, snapshot } from "./trees.js";

describe("installer: host files in a temporary root", () => {
  let scratch: string;
  let rootDir: string;
  let host: HostRoot;
  let source: PayloadSource;

  beforeEach(async () => {
    scratch = await mkdtemp(join(tmpdir(), "vmpod-installer-"));
    rootDir = join(scratch, "host");
    await makeHostRoot(rootDir);
    host = new HostRoot(rootDir);
    source = await makeSourcePackage(join(scratch, "package"));
  });
  afterEach(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("installs vmpod, its unit, kubelet's drop-in and a configuration, and uninstall leaves the root as it was", async () => {
    const before = await snapshot(rootDir);
    const changes = await installHostFiles(host, source, silentLogger);
    assert.deepEqual(changes, { payloadChanged: true, unitChanged: true, dropInChanged: true, configWritten: true });

    const opt = join(rootDir, "opt/vmpod");
    assert.equal(JSON.parse(await readFile(join(opt, "package.json"), "utf8")).name, "vmpod");
    assert.equal(await readFile(join(opt, "dist/src/main.js"), "utf8"), "// the daemon\n");
    assert.equal(await readFile(join(opt, "dist/guest/build/kernel-params.js"), "utf8"), "export const BASE_KERNEL_PARAMS = [];\n");
    await assert.rejects(stat(join(opt, "dist/test")), "dist's tests are not installed");
    await assert.rejects(stat(join(opt, "dist/e2e")), "dist's e2e tests are not installed");
    assert.equal(await readlink(join(opt, "node_modules/.bin/some-dep")), "../some-dep/cli.js", "symlinks inside node_modules stay symlinks");
    assert.equal((await stat(join(opt, "node_modules/some-dep/cli.js"))).mode & 0o777, 0o755);
    assert.equal((await stat(join(opt, "bin/node"))).mode & 0o777, 0o755, "the node binary is executable");
    assert.equal(await readFile(join(opt, "bin/node"), "utf8"), await readFile(source.nodeBinary, "utf8"));
    assert.equal(await readFile(join(opt, "config/configuration.toml"), "utf8"), "# the packaged defaults\n");
    const guest = join(opt, "guest/out/current");
    assert.ok((await lstat(guest)).isDirectory(), "the guest assets are a directory of their own, not a link into the image");
    assert.deepEqual((await readdir(guest)).sort(), ["initrd.img", "manifest.json", "root.erofs", "vmlinux"]);
    assert.equal(await readFile(join(guest, "root.erofs"), "utf8"), "root.erofs of build 0123abcd\n");

    const deployed = (file: string) => readFile(join(source.packageDir, file), "utf8");
    assert.equal(await readFile(join(rootDir, "etc/systemd/system/vmpod.service"), "utf8"), await deployed(DEPLOY_FILES.unit));
    assert.equal(await readFile(join(rootDir, "etc/systemd/system/kubelet.service.d/10-vmpod.conf"), "utf8"), await deployed(DEPLOY_FILES.kubeletDropIn));
    assert.equal(await readFile(join(rootDir, "etc/vmpod/configuration.toml"), "utf8"), await deployed(DEPLOY_FILES.config));
    assert.equal((await stat(join(rootDir, "etc/systemd/system/vmpod.service"))).mode & 0o777, 0o644);
    assert.equal(await readFile(join(rootDir, "etc/systemd/system/kubelet.service.d/10-kubeadm.conf"), "utf8").then((t) => t.includes("KUBELET_KUBEADM_ARGS")), true, "kubeadm's drop-in is untouched");

    const manifest = await readManifest(opt);
    assert.deepEqual(manifest?.createdDirs, ["/opt", "/etc/vmpod"], "only the directories that were missing are recorded");
    assert.equal(await readdir(join(rootDir, "opt")).then((names) => names.join(",")), "vmpod", "nothing staged is left beside the install");

    const removed = await removeHostFiles(host, silentLogger);
    assert.deepEqual(removed, { unitRemoved: true, dropInRemoved: true, installDirRemoved: true, configKept: false });
    assert.deepEqual(await snapshot(rootDir), before);
  });

  it("records and removes kubelet's drop-in directory when the node had none", async () => {
    await rm(join(rootDir, "etc/systemd/system/kubelet.service.d"), { recursive: true });
    const before = await snapshot(rootDir);
    await installHostFiles(host, source, silentLogger);
    assert.deepEqual((await readManifest(join(rootDir, "opt/vmpod")))?.createdDirs, ["/opt", "/etc/systemd/system/kubelet.service.d", "/etc/vmpod"]);
    await removeHostFiles(host, silentLogger);
    assert.deepEqual(await snapshot(rootDir), before);
  });

  it("changes nothing on a repeat, and swaps in a new build whole", async () => {
    await installHostFiles(host, source, silentLogger);
    const installed = await snapshot(rootDir);
    assert.deepEqual(await installHostFiles(host, source, silentLogger), { payloadChanged: false, unitChanged: false, dropInChanged: false, configWritten: false });
    assert.deepEqual(await snapshot(rootDir), installed, "a repeat writes nothing");

    await writeFile(join(source.packageDir, "dist/src/main.js"), "// the daemon, version 2\n");
    await rm(join(source.packageDir, "node_modules/some-dep/index.js"));
    const changes = await installHostFiles(host, source, silentLogger);
    assert.deepEqual(changes, { payloadChanged: true, unitChanged: false, dropInChanged: false, configWritten: false });
    assert.equal(await readFile(join(rootDir, "opt/vmpod/dist/src/main.js"), "utf8"), "// the daemon, version 2\n");
    await assert.rejects(stat(join(rootDir, "opt/vmpod/node_modules/some-dep/index.js")), "files gone from the build are gone from the install");
    assert.deepEqual(await readdir(join(rootDir, "opt")), ["vmpod"], "the old copy is removed");
    assert.deepEqual((await readManifest(join(rootDir, "opt/vmpod")))?.createdDirs, ["/opt", "/etc/vmpod"], "an upgrade keeps what the first install created");

    const before = await snapshot(join(rootDir, "etc"));
    await writeFile(join(source.packageDir, DEPLOY_FILES.unit), "[Service]\nExecStart=/opt/vmpod/bin/node /opt/vmpod/dist/src/main.js serve --debug\n");
    assert.equal((await installHostFiles(host, source, silentLogger)).unitChanged, true);
    assert.notDeepEqual(await snapshot(join(rootDir, "etc")), before);
  });

  it("keeps the node's own configuration, and one edited after the install", async () => {
    await mkdir(join(rootDir, "etc/vmpod"));
    await writeFile(join(rootDir, "etc/vmpod/configuration.toml"), "[runtime]\nlog_level = \"debug\"\n");
    const before = await snapshot(rootDir);
    assert.equal((await installHostFiles(host, source, silentLogger)).configWritten, false);
    assert.equal(await readFile(join(rootDir, "etc/vmpod/configuration.toml"), "utf8"), "[runtime]\nlog_level = \"debug\"\n");
    assert.equal((await removeHostFiles(host, silentLogger)).configKept, true);
    assert.deepEqual(await snapshot(rootDir), before);

    await rm(join(rootDir, "etc/vmpod"), { recursive: true });
    await installHostFiles(host, source, silentLogger);
    await writeFile(join(rootDir, "etc/vmpod/configuration.toml"), "[runtime]\ndefault_handler = \"vmpod\"\n");
    assert.equal((await removeHostFiles(host, silentLogger)).configKept, true);
    assert.equal(await readFile(join(rootDir, "etc/vmpod/configuration.toml"), "utf8"), "[runtime]\ndefault_handler = \"vmpod\"\n", "an edited configuration stays, and its directory with it");
  });

  it("refuses a payload without its guest assets, naming the missing file, and writes nothing", async () => {
    const before = await snapshot(rootDir);
    await rm(join(source.guestDir, "root.erofs"));
    const err = await installHostFiles(host, source, silentLogger).then(
      () => assert.fail("installed without a root image"),
      (e: unknown) => e,
    );
    assert.equal(kindOf(err), "FailedPrecondition");
    assert.match(String(err), /root\.erofs.*build the guest/);
    assert.deepEqual(await snapshot(rootDir), before);
  });

  it("removes what an interrupted install left, and nothing on a node without vmpod", async () => {
    const before = await snapshot(rootDir);
    assert.deepEqual(await removeHostFiles(host, silentLogger), { unitRemoved: false, dropInRemoved: false, installDirRemoved: false, configKept: false });
    assert.deepEqual(await snapshot(rootDir), before);
    await installHostFiles(host, source, silentLogger);
    await mkdir(join(rootDir, "opt/.vmpod.new-0123456789ab/dist"), { recursive: true });
    await removeHostFiles(host, silentLogger);
    assert.deepEqual(await snapshot(rootDir), before);
  });
});
