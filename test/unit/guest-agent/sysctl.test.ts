import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import type { OciConfig } from "../../../guest/agent/oci-spec.js";
import { applySysctls, splitGuestSysctls, sysctlPath } from "../../../guest/agent/sysctl.js";

const invalid = (pattern: RegExp) => (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message);

describe("the pod's sysctls in the guest", () => {
  it("leaves to the agent the network and IPC ones, which the guest shares with every container", () => {
    const config = { ociVersion: "1.0.2", mounts: [], linux: { sysctl: { "net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20", "kernel.domainname": "x" } } } as unknown as OciConfig;
    const { config: out, guest } = splitGuestSysctls(config);
    assert.deepEqual(guest, { "net.ipv4.ip_forward": "1", "kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "20" });
    assert.deepEqual(out.linux?.sysctl, { "kernel.domainname": "x" });
    const none = splitGuestSysctls({ ociVersion: "1.0.2", mounts: [], linux: { sysctl: { "net.core.somaxconn": "1024" } } } as unknown as OciConfig);
    assert.equal(none.config.linux?.sysctl, undefined, "nothing left for crun");
  });

  it("turns dotted names into paths, a slash standing for a dot inside a component", () => {
    assert.equal(sysctlPath("net.ipv4.conf.eth0/100.forwarding"), "net/ipv4/conf/eth0.100/forwarding");
    assert.throws(() => sysctlPath("net../../etc"), invalid(/bad sysctl name/));
    assert.throws(() => sysctlPath("/etc/passwd"), invalid(/bad sysctl name/));
  });

  it("writes them under /proc/sys, and names one the kernel does not have", async () => {
    const root = await mkdtemp(join(tmpdir(), "vmpod-sysctl-"));
    try {
      await mkdir(join(root, "kernel"));
      await writeFile(join(root, "kernel", "shm_rmid_forced"), "0");
      await applySysctls({ "kernel.shm_rmid_forced": "1" }, root);
      assert.equal(await readFile(join(root, "kernel", "shm_rmid_forced"), "utf8"), "1");
      await assert.rejects(applySysctls({ "net.ipv4.nope": "1" }, root), invalid(/set sysctl net\.ipv4\.nope=1 in the pod/));
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
