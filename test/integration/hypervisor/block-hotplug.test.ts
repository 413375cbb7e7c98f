/**
 * Image layers as disks in a real pod VM (QEMU under TCG here, microvm,
 * virtio-scsi): erofs images built on the host are hot-added while the VM
 * runs, the guest agent mounts them ("scsi" storages) and makes each
 * container's root filesystem as an overlay of them ("overlayfs" storage),
 * and the disks are hot-removed afterwards. After the VM stops, nothing is
 * left on the host.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AgentClient } from "../../../src/agent/client.js";
import type { Storage } from "../../../src/agent/translate.js";
import { VmpodError } from "../../../src/common/errors.js";
import { run } from "../../../src/common/exec.js";
import type { OciSpec } from "../../../src/common/oci-spec.js";
import type { AttachedDevice } from "../../../src/hypervisor/hypervisor.js";
import { QemuHypervisor } from "../../../src/hypervisor/qemu.js";
import { buildErofsLayer } from "../../../src/image/erofs-layer.js";
import { PodVm } from "../../../src/sandbox/pod-vm.js";
import { openProcessIo, readAll } from "../../../src/sandbox/process-io.js";
import { makeBusyboxRootfs } from "../../helpers/busybox-rootfs.js";
import { assertNothingLeft } from "../../helpers/leaks.js";
import { vmFixture, type VmFixture } from "../../helpers/vm-fixture.js";

const LAYERS_DIR = "/run/vmpod/layers";

function spec(rootfs: string, args: string[]): OciSpec {
  return {
    ociVersion: "1.1.0",
    process: { args, env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } },
    root: { path: rootfs, readonly: false },
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    ],
    linux: { namespaces: [{ type: "pid" }, { type: "mount" }], cgroupsPath: "" },
  };
}

/** The storages of a container over `disks` (bottom layer first, as an image lists them). */
function layerStorages(containerId: string, disks: readonly { attached: AttachedDevice; mountPoint: string }[]): { storages: Storage[]; rootfs: string } {
  const rootfs = `/run/vmpod/containers/${containerId}/rootfs`;
  const storages: Storage[] = disks.map(({ attached, mountPoint }) => {
    assert.equal(attached.kind, "block");
    return { driver: "scsi", source: attached.kind === "block" ? attached.source : "", fstype: "erofs", options: ["ro"], mountPoint };
  });
  const lowers = disks.map((d) => d.mountPoint).reverse();
  storages.push({ driver: "overlayfs", source: "overlay", fstype: "overlay", options: [`lowerdir=${lowers.join(":")}`], mountPoint: rootfs });
  return { storages, rootfs };
}

/** Runs a container to its end; its stdout and exit status. */
async function runContainer(agent: AgentClient, id: string, storages: Storage[], rootfs: string, script: string): Promise<{ out: string; err: string; status: number }> {
  await agent.createContainer({ containerId: id, storages, spec: spec(rootfs, ["sh", "-c", script]) });
  const io = openProcessIo(agent, id, "", {});
  await agent.startContainer(id);
  const [out, err, status] = await Promise.all([readAll(io.stdout), readAll(io.stderr!), io.wait()]);
  await agent.removeContainer(id, 10);
  return { out, err, status };
}

/** Runs a command in a running container. */
async function execIn(agent: AgentClient, id: string, execId: string, script: string): Promise<{ out: string; err: string; status: number }> {
  await agent.execProcess(id, execId, { args: ["sh", "-c", script], env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } });
  const io = openProcessIo(agent, id, execId, {});
  const [out, err, status] = await Promise.all([readAll(io.stdout), readAll(io.stderr!), io.wait()]);
  return { out, err, status };
}

describe("image layers as hot-added disks (real QEMU)", function () {
  this.timeout(600_000);
  let fx: VmFixture;
  let work: string;
  let vm: PodVm | undefined;
  let hv: QemuHypervisor;
  const images: Record<"lower" | "upper" | "tools", string> = { lower: "", upper: "", tools: "" };
  let lower: { attached: AttachedDevice; mountPoint: string };
  let upper: { attached: AttachedDevice; mountPoint: string };

  before(async () => {
    fx = await vmFixture({ configure: (c) => ({ ...c, hypervisor: { ...c.hypervisor, disableBlockDeviceUse: false } }) });
    work = await mkdtemp(join(tmpdir(), "vmpod-layers-"));
    // lower: busybox and a few files; upper: a whiteout of one of them and a new file.
    const lowerDir = await makeBusyboxRootfs(join(work, "lower"));
    await writeFile(join(lowerDir, "etc/gone"), "deleted by the upper layer\n");
    await writeFile(join(lowerDir, "etc/kept"), "from the lower layer\n");
    const upperDir = join(work, "upper");
    await mkdir(join(upperDir, "etc"), { recursive: true });
    await run("mknod", [join(upperDir, "etc/gone"), "c", "0", "0"]);
    await writeFile(join(upperDir, "etc/new"), "from the upper layer\n");
    // tools: busybox again, and a file no one reads before its disk is pulled.
    const toolsDir = await makeBusyboxRootfs(join(work, "tools"));
    await writeFile(join(toolsDir, "unread"), randomBytes(4 << 20));
    for (const d of [lowerDir, upperDir, toolsDir]) await chmod(d, 0o755);
    for (const name of ["lower", "upper", "tools"] as const) {
      images[name] = (await buildErofsLayer(join(work, name), join(work, `${name}.erofs`))).path;
    }
    const { paths, spec: vmSpec } = fx.engine.vmFor({ id: "blk1" });
    assert.deepEqual(vmSpec.blockHotplug, { driver: "virtio-scsi" });
    hv = new QemuHypervisor();
    vm = await PodVm.boot({
      id: "blk1",
      paths,
      spec: vmSpec,
      hypervisor: hv,
      hostname: "blk1",
      agentDialTimeoutMs: fx.config.agent.dialTimeoutMs,
      agentCallTimeoutMs: fx.config.agent.callTimeoutMs,
      logger: fx.logger,
    });
  });

  after(async () => {
    await vm?.stop();
    await fx?.dispose();
    if (fx) await assertNothingLeft(fx.root);
    if (work) await rm(work, { recursive: true, force: true });
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed" && vm) {
      process.stderr.write(`      console:\n${await vm.consoleTail()}\n`);
    }
  });

  it("adds two layers as disks and gives each container the merged view, with writes of its own", async () => {
    const agent = vm!.agentClient;
    lower = { attached: await hv.addDevice({ kind: "block", id: "layer-lower", path: images.lower, readonly: true, serial: "lower" }), mountPoint: `${LAYERS_DIR}/0` };
    upper = { attached: await hv.addDevice({ kind: "block", id: "layer-upper", path: images.upper, readonly: true }), mountPoint: `${LAYERS_DIR}/1` };
    assert.deepEqual(lower.attached, { kind: "block", id: "layer-lower", storageDriver: "scsi", source: "0:0" });
    assert.deepEqual(upper.attached, { kind: "block", id: "layer-upper", storageDriver: "scsi", source: "0:1" });

    const c1 = layerStorages("c1", [lower, upper]);
    const first = await runContainer(
      agent,
      "c1",
      c1.storages,
      c1.rootfs,
      "ls /etc; cat /etc/new /etc/kept; test -e /etc/gone || echo gone-is-hidden; echo mine > /written; echo x >> /etc/kept; cat /written; grep -c ' / overlay ' /proc/mounts",
    );
    assert.equal(first.err, "");
    assert.equal(first.status, 0);
    assert.equal(first.out, "group\nkept\nnew\npasswd\nfrom the upper layer\nfrom the lower layer\ngone-is-hidden\nmine\n1\n");

    const c2 = layerStorages("c2", [lower, upper]);
    const second = await runContainer(agent, "c2", c2.storages, c2.rootfs, "test -e /written || echo not-written; cat /etc/kept; ls /etc");
    assert.equal(second.err, "");
    assert.equal(second.out, "not-written\nfrom the lower layer\ngroup\nkept\nnew\npasswd\n", "the first container's writes are its own");

    // A CreateContainer that fails (its overlay names a directory outside its storages) releases what it took.
    const bad = layerStorages("c3", [lower]);
    bad.storages[1] = { ...bad.storages[1]!, options: ["lowerdir=/usr"] };
    await assert.rejects(
      agent.createContainer({ containerId: "c3", storages: bad.storages, spec: spec(bad.rootfs, ["true"]) }),
      (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && /lower directory/.test(err.message),
    );
    const again = await runContainer(agent, "c3", layerStorages("c3", [lower]).storages, layerStorages("c3", [lower]).rootfs, "cat /etc/gone");
    assert.equal(again.out, "deleted by the upper layer\n", "the lower layer alone, mounted again");
  });

  it("removes the disks, and the guest no longer has them", async () => {
    const agent = vm!.agentClient;
    const tools = { attached: await hv.addDevice({ kind: "block", id: "layer-tools", path: images.tools, readonly: true }), mountPoint: `${LAYERS_DIR}/2` };
    assert.equal(tools.attached.kind === "block" && tools.attached.source, "0:2");
    const t = layerStorages("tools", [tools]);
    await agent.createContainer({ containerId: "tools", storages: t.storages, spec: spec(t.rootfs, ["sleep", "1000"]) });
    await agent.startContainer("tools");
    const listDisks = "ls /sys/bus/scsi/devices | grep '^0:0:' | tr '\\n' ' '";
    assert.equal((await execIn(agent, "tools", "ls1", listDisks)).out, "0:0:0:0 0:0:0:1 0:0:0:2 ");

    await hv.removeDevice("layer-lower");
    await hv.removeDevice("layer-upper");
    await assert.rejects(hv.removeDevice("layer-upper"), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound");
    let seen = "";
    for (let i = 0; i < 50 && seen !== "0:0:0:2 "; i++) {
      seen = (await execIn(agent, "tools", `ls-${i}`, listDisks)).out;
      if (seen !== "0:0:0:2 ") await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(seen, "0:0:0:2 ", "only the tools disk is left in the guest");
    const nodes = await hv.qmp!.execute<{ "node-name": string }[]>("query-named-block-nodes", { flat: true });
    assert.ok(!nodes.some((n) => /^vmpod-node[01]$/.test(n["node-name"])), "QEMU has no node left for them");

    // The address of a removed disk is given again.
    const reused = await hv.addDevice({ kind: "block", id: "layer-again", path: images.lower, readonly: true });
    assert.equal(reused.kind === "block" && reused.source, "0:0");
    await hv.removeDevice("layer-again");
  });

  it("removing a disk still in use goes through: the guest's reads fail, and the container is still removed cleanly", async () => {
    // SCSI unplug does not wait for the guest: the hypervisor cannot refuse,
    // so PodVm removes a layer's disk only after the containers on it.
    const agent = vm!.agentClient;
    assert.equal((await execIn(agent, "tools", "stat", "stat -c %s /unread")).out, `${4 << 20}\n`, "the file is there, its data not read yet");
    await hv.removeDevice("layer-tools");
    const read = await execIn(agent, "tools", "read", "cat /unread > /dev/null && echo read-ok || echo read-failed");
    assert.equal(read.out, "read-failed\n");
    await agent.signalProcess("tools", "", 9);
    await agent.removeContainer("tools", 10);
    const nodes = await hv.qmp!.execute<{ "node-name": string }[]>("query-named-block-nodes", { flat: true });
    assert.deepEqual(
      nodes.map((n) => n["node-name"]).filter((n) => n.startsWith("vmpod-")),
      [],
    );
  });
});
