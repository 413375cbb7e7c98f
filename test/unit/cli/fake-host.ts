/**
 * A host described in a few fields, seen through the HostProbe interface of
 * `vmpod env` and `vmpod check`: a capable KVM host by default, any part of
 * which a test makes bad.
 */
import { failedPrecondition } from "../../../src/common/errors.js";
import type { Acceleration } from "../../../src/config/types.js";
import type { CgroupFacts, CniFacts, HostFacts, HostProbe, KvmFacts } from "../../../src/cli/host-probe.js";
import type { AccelChoice } from "../../../src/hypervisor/accel.js";

export interface FakeHost {
  /** Executable or readable files. */
  files: Set<string>;
  /** Files present but not executable. */
  notExecutable: Set<string>;
  /** --version output by program; a program missing here fails to run. */
  versions: Map<string, string>;
  kvm: KvmFacts;
  devices: Map<string, { present: boolean; usable: boolean }>;
  cgroups: CgroupFacts;
  cni: CniFacts;
  freeBytes: Map<string, number>;
  host: HostFacts;
  sizes: Map<string, number>;
  texts: Map<string, string>;
}

export const QEMU = "/usr/bin/qemu-system-x86_64";
export const VIRTIOFSD = "/usr/lib/qemu/virtiofsd";
export const RUNC = "/usr/bin/runc";
export const GUEST = "/g";
export const GIB = 1024 * 1024 * 1024;

export function goodHost(): FakeHost {
  const assets = [`${GUEST}/vmlinux`, `${GUEST}/initrd.img`, `${GUEST}/root.erofs`];
  return {
    files: new Set([QEMU, VIRTIOFSD, RUNC, ...assets]),
    notExecutable: new Set(),
    versions: new Map([
      [QEMU, "QEMU emulator version 7.2.22"],
      [VIRTIOFSD, "virtiofsd version 7.2.22"],
      [RUNC, "runc version 1.1.5"],
    ]),
    kvm: { present: true, usable: true, pvm: false },
    devices: new Map([
      ["/dev/net/tun", { present: true, usable: true }],
      ["/dev/vhost-vsock", { present: false, usable: false }],
    ]),
    cgroups: { version: "v2", controllers: ["cpuset", "cpu", "io", "memory", "pids"] },
    cni: { conflist: "/etc/cni/net.d/10-vmpod.conflist", networkName: "vmpod", plugins: ["bridge", "host-local", "portmap"], missingPlugins: [], pluginBinaries: 12 },
    freeBytes: new Map([
      ["/run/vmpod", 4 * GIB],
      ["/var/lib/vmpod/image", 50 * GIB],
    ]),
    host: { kernel: "6.1.0-13-amd64", architecture: "x86_64", cpuModel: "Test CPU", cpus: 4, memoryBytes: 8 * GIB, isRoot: true },
    sizes: new Map(assets.map((a, i) => [a, (i + 1) * 1024 * 1024])),
    texts: new Map(),
  };
}

export function probeOf(h: FakeHost): HostProbe {
  return {
    files: {
      problemWith(path, need) {
        if (!h.files.has(path)) return Promise.resolve("not found");
        if (need === "executable" && h.notExecutable.has(path)) return Promise.resolve("not executable");
        return Promise.resolve(undefined);
      },
    },
    version(path) {
      const v = h.versions.get(path);
      return v === undefined ? Promise.reject(failedPrecondition(`${path} not found`)) : Promise.resolve(v);
    },
    kvm: () => Promise.resolve(h.kvm),
    accel(requested: Acceleration): Promise<AccelChoice> {
      if (requested === "tcg") return Promise.resolve({ accel: "tcg", reason: "tcg requested by configuration" });
      const usable = h.kvm.present && h.kvm.usable;
      if (requested === "kvm") {
        return usable ? Promise.resolve({ accel: "kvm", reason: "kvm requested by configuration" }) : Promise.reject(failedPrecondition("kvm requested by configuration, but /dev/kvm does not exist"));
      }
      if (!h.kvm.present) return Promise.resolve({ accel: "tcg", reason: "/dev/kvm does not exist: using tcg" });
      if (h.kvm.pvm) return Promise.resolve({ accel: "tcg", reason: "kvm_pvm provides /dev/kvm (nested, shadow paging): using tcg" });
      return Promise.resolve({ accel: "kvm", reason: "/dev/kvm is usable: using kvm" });
    },
    device: (path) => Promise.resolve(h.devices.get(path) ?? { present: false, usable: false }),
    cgroups: () => Promise.resolve(h.cgroups),
    cni: () => Promise.resolve(h.cni),
    freeSpace(path) {
      const bytes = h.freeBytes.get(path);
      return bytes === undefined ? Promise.reject(failedPrecondition(`statfs ${path}`)) : Promise.resolve({ at: path, bytes });
    },
    size: (path) => Promise.resolve(h.sizes.get(path)),
    sha256: (path) => Promise.resolve(`sha256-of-${path}`),
    readText: (path) => Promise.resolve(h.texts.get(path)),
    host: () => Promise.resolve(h.host),
  };
}
