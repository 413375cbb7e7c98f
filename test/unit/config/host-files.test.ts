import assert from "node:assert/strict";
import { hostFileProblems, type FileNeed, type PathProbe } from "../../../src/config/host-files.js";
import { builtInConfig, parseConfig } from "../../../src/config/load.js";

/** A host where only `present` paths are usable files (executables where asked). */
function fakeHost(present: readonly string[], notExecutable: readonly string[] = []): PathProbe & { asked: [string, FileNeed][] } {
  const asked: [string, FileNeed][] = [];
  return {
    asked,
    problemWith(path, need) {
      asked.push([path, need]);
      if (!present.includes(path)) return Promise.resolve("not found");
      if (need === "executable" && notExecutable.includes(path)) return Promise.resolve("not executable");
      return Promise.resolve(undefined);
    },
  };
}

const QEMU = "/usr/bin/qemu-system-x86_64";
const VIRTIOFSD = "/usr/lib/qemu/virtiofsd";
const ASSETS = ["/g/vmlinux", "/g/initrd.img", "/g/root.erofs"];

describe("files a configuration needs on the host", () => {
  it("are all there: no problem", async () => {
    const host = fakeHost([QEMU, VIRTIOFSD, "/usr/bin/runc", ...ASSETS]);
    assert.deepEqual(await hostFileProblems(builtInConfig("/g"), host), []);
    assert.deepEqual(
      host.asked.map(([p, n]) => `${n} ${p}`).sort(),
      [`executable ${QEMU}`, "executable /usr/bin/runc", `executable ${VIRTIOFSD}`, "file /g/initrd.img", "file /g/root.erofs", "file /g/vmlinux"],
    );
  });

  it("name the key, the file and the line, or say the key is a default", async () => {
    const text = ["[hypervisor.qemu]", 'path = "/opt/qemu"', 'kernel = "/k/vmlinux"', "", "[runtime.handlers.vmpod]", 'type = "vm"', "[runtime.handlers.crun]", 'type = "oci"', 'runtime_path = "/usr/bin/crun"'].join("\n");
    const loaded = parseConfig(text, "/etc/vmpod/configuration.toml", "/g");
    const problems = await hostFileProblems(loaded, fakeHost([VIRTIOFSD, "/g/initrd.img", "/g/root.erofs", "/usr/bin/crun"], ["/usr/bin/crun"]));
    assert.deepEqual(problems, [
      "/etc/vmpod/configuration.toml:2: hypervisor.qemu.path: QEMU binary /opt/qemu is not found (needed by the vm handler vmpod)",
      "/etc/vmpod/configuration.toml:3: hypervisor.qemu.kernel: guest kernel /k/vmlinux is not found (needed by the vm handler vmpod)",
      "/etc/vmpod/configuration.toml:9: runtime.handlers.crun.runtime_path: OCI runtime /usr/bin/crun is not executable (needed by the oci handler crun)",
    ]);
    const defaults = await hostFileProblems(builtInConfig("/g"), fakeHost([QEMU, "/usr/bin/runc", ...ASSETS]));
    assert.deepEqual(defaults, ['(built-in defaults): hypervisor.qemu.virtio_fs_daemon (default): virtiofsd /usr/lib/qemu/virtiofsd is not found (needed by shared_fs = "virtio-fs")']);
  });

  it("leave QEMU and the guest alone when no handler runs VMs, and virtiofsd when nothing is shared", async () => {
    const ociOnly = parseConfig('[runtime]\ndefault_handler = "runc"\n[runtime.handlers.runc]\ntype = "oci"\nruntime_path = "/usr/bin/runc"', "c.toml", "/g");
    assert.deepEqual(await hostFileProblems(ociOnly, fakeHost(["/usr/bin/runc"])), []);
    const noShare = parseConfig('[hypervisor.qemu]\nshared_fs = "none"', "c.toml", "/g");
    assert.deepEqual(await hostFileProblems(noShare, fakeHost([QEMU, "/usr/bin/runc", ...ASSETS])), []);
  });
});
