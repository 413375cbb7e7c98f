import assert from "node:assert/strict";
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import type { OciConfig } from "../../../guest/agent/oci-spec.js";
import { adaptForGuest, checkGuestPath, checkId, chooseCgroupsPath, resolveInside } from "../../../guest/agent/spec-policy.js";

const invalid = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";

describe("guest agent: what crun gets", () => {
  let dir: string;
  let shared: string;
  let rootfs: string;

  beforeEach(async () => {
    dir = await realpath(await mkdtemp(join(tmpdir(), "vmpod-policy-")));
    shared = join(dir, "shared");
    rootfs = join(shared, "c1", "rootfs");
    await mkdir(rootfs, { recursive: true });
    await mkdir(join(dir, "elsewhere"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const config = (overrides: Partial<OciConfig> = {}): OciConfig => ({
    ociVersion: "1.0.2",
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: ["sh"], cwd: "/" },
    root: { path: rootfs },
    hostname: "c1",
    mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
    linux: {
      namespaces: ["pid", "network", "ipc", "uts", "mount"].map((type) => ({ type })),
      cgroupsPath: "/kubepods/c1",
    },
    ...overrides,
  });

  it("accepts ids that are one safe path component", () => {
    for (const good of ["a", "abc-DEF_1.2", "0".repeat(64)]) checkId("container id", good);
    for (const bad of ["", ".", "..", "../a", "a/b", ".a", "-a", "a b", "a\0", "é", "x".repeat(129)]) {
      assert.throws(() => checkId("container id", bad), invalid, JSON.stringify(bad));
    }
  });

  it("accepts absolute, normalized guest paths below /", () => {
    checkGuestPath("p", "/run/vmpod/shared");
    for (const bad of ["", "/", "rel", "/a/../b", "/a/./b", "/a//b", "/a/", "/a\0b"]) assert.throws(() => checkGuestPath("p", bad), invalid, JSON.stringify(bad));
  });

  it("resolves a path inside the allowed roots, symlinks included, and refuses one that leads out", async () => {
    assert.equal(await resolveInside("root", rootfs, [shared]), rootfs);
    assert.equal(await resolveInside("root", shared, [shared]), shared, "a root may be a storage itself");
    await symlink("c1/rootfs", join(shared, "inside-link"));
    assert.equal(await resolveInside("root", join(shared, "inside-link"), [shared]), rootfs);
    await symlink(join(dir, "elsewhere"), join(shared, "escape"));
    await assert.rejects(resolveInside("root", join(shared, "escape"), [shared]), invalid);
    await assert.rejects(resolveInside("root", join(shared, "c1", "..", "..", "elsewhere"), [shared]), invalid);
    await assert.rejects(resolveInside("root", `${shared}-sibling`, [shared]), invalid);
    await mkdir(`${shared}-sibling`);
    await assert.rejects(resolveInside("root", `${shared}-sibling`, [shared]), invalid, "a prefix is not a parent");
    await assert.rejects(resolveInside("root", "relative", [shared]), invalid);
  });

  it("keeps a plain absolute cgroupsPath, and puts anything else under /vmpod", () => {
    assert.equal(chooseCgroupsPath("/kubepods/pod1/c1", "c1"), "/kubepods/pod1/c1");
    assert.equal(chooseCgroupsPath(undefined, "c1"), "/vmpod/c1");
    assert.equal(chooseCgroupsPath("system.slice:crio:c1", "c1"), "/vmpod/c1", "systemd's form: no systemd in the guest");
    assert.equal(chooseCgroupsPath("relative/c1", "c1"), "/vmpod/c1");
    assert.equal(chooseCgroupsPath("/a/../b", "c1"), "/vmpod/c1");
  });

  it("gives crun the resolved root, the guest's network, IPC and UTS namespaces and no hostname", async () => {
    await symlink("c1/rootfs", join(shared, "link"));
    const out = await adaptForGuest(config({ root: { path: join(shared, "link"), readonly: true } }), { containerId: "c1", allowedRoots: [shared] });
    assert.deepEqual(out.root, { path: rootfs, readonly: true });
    assert.deepEqual(out.linux?.namespaces, [{ type: "pid" }, { type: "mount" }]);
    assert.equal(out.hostname, undefined);
    assert.equal(out.linux?.cgroupsPath, "/kubepods/c1");
  });

  it("checks bind mount sources like the root, and passes their resolved paths", async () => {
    await writeFile(join(shared, "hosts"), "");
    await symlink("hosts", join(shared, "hosts-link"));
    const ok = await adaptForGuest(
      config({ mounts: [{ destination: "/etc/hosts", type: "bind", source: join(shared, "hosts-link"), options: ["rbind", "ro"] }] }),
      { containerId: "c1", allowedRoots: [shared] },
    );
    assert.equal(ok.mounts[0]?.source, join(shared, "hosts"));
    await assert.rejects(
      adaptForGuest(config({ mounts: [{ destination: "/x", source: "/etc", options: ["bind"] }] }), { containerId: "c1", allowedRoots: [shared] }),
      invalid,
    );
  });

  it("refuses specs without a process, args or root, namespace paths and unknown namespaces", async () => {
    const ctx = { containerId: "c1", allowedRoots: [shared] };
    const noProcess = config();
    delete noProcess.process;
    await assert.rejects(adaptForGuest(noProcess, ctx), invalid);
    await assert.rejects(adaptForGuest(config({ process: { terminal: false, user: { uid: 0, gid: 0 }, args: [], cwd: "/" } }), ctx), invalid);
    await assert.rejects(adaptForGuest(config({ root: { path: "" } }), ctx), invalid);
    await assert.rejects(adaptForGuest(config({ linux: { namespaces: [{ type: "network", path: "/var/run/netns/x" }] } }), ctx), invalid);
    await assert.rejects(adaptForGuest(config({ linux: { namespaces: [{ type: "bogus" }] } }), ctx), invalid);
    await writeFile(join(shared, "a-file"), "");
    await assert.rejects(adaptForGuest(config({ root: { path: join(shared, "a-file") } }), ctx), invalid);
  });
});
