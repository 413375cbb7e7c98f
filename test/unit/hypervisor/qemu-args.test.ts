import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { buildQemuArgs, optValue, passedFds } from "../../../src/hypervisor/qemu-args.js";
import { vmSpecFromConfig } from "../../../src/hypervisor/spec-from-config.js";
import { validateSpec, type VmSpec } from "../../../src/hypervisor/spec.js";

const RUN = "/run/vmpod/vms/pod1";

const base: VmSpec = {
  id: "pod1",
  qemuPath: "/usr/bin/qemu-system-x86_64",
  runDir: RUN,
  machine: "microvm",
  accel: "tcg",
  vcpus: 2,
  memoryMiB: 256,
  qmpSocket: `${RUN}/qmp.sock`,
  consoleLog: `${RUN}/console.log`,
};

const guest = {
  boot: { kernel: "/guest/vmlinuz", initrd: "/guest/initrd.img", params: ["console=ttyS0", "quiet", "panic=-1"] },
  rootImage: "/guest/root.erofs",
  agent: { kind: "virtio-serial", socketPath: `${RUN}/agent.sock`, name: "agent.channel.0" },
} as const;

const share = {
  sharedFs: { tag: "vmpod", sourceDir: "/run/vmpod/shared/pod1", socketPath: `${RUN}/vfsd-fs0.sock` },
  virtiofsd: { daemonPath: "/usr/lib/qemu/virtiofsd", cache: "auto", threadPoolSize: 1 },
} as const;

const CONTROL = [
  "-chardev", `socket,id=qmp,path=${RUN}/qmp.sock,server=on,wait=off`,
  "-mon", "chardev=qmp,mode=control",
  "-chardev", `file,id=console,path=${RUN}/console.log`,
  "-serial", "chardev:console",
];

describe("qemu command line", () => {
  it("boots a microvm under TCG with root image, agent port and tsc_early_khz", () => {
    const spec: VmSpec = { ...base, ...guest, tscKhz: 2596136 };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "2",
      "-m", "256M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-global", "virtio-mmio.force-legacy=false",
      ...CONTROL,
      "-kernel", "/guest/vmlinuz",
      "-initrd", "/guest/initrd.img",
      "-append", "console=ttyS0 quiet panic=-1 tsc_early_khz=2596136",
      "-blockdev", "driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/guest/root.erofs",
      "-device", "virtio-blk-device,drive=rootfs,id=rootfs-blk",
      "-device", "virtio-serial-device,id=vserial",
      "-chardev", `socket,id=agent,path=${RUN}/agent.sock,server=on,wait=off`,
      "-device", "virtserialport,bus=vserial.0,chardev=agent,name=agent.channel.0",
    ]);
  });

  it("shares a directory on microvm with a memfd backend and vhost-user-fs-device", () => {
    const spec: VmSpec = { ...base, ...guest, ...share };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "2",
      "-m", "256M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
      "-global", "virtio-mmio.force-legacy=false",
      ...CONTROL,
      "-kernel", "/guest/vmlinuz",
      "-initrd", "/guest/initrd.img",
      "-append", "console=ttyS0 quiet panic=-1",
      "-blockdev", "driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/guest/root.erofs",
      "-device", "virtio-blk-device,drive=rootfs,id=rootfs-blk",
      "-device", "virtio-serial-device,id=vserial",
      "-chardev", `socket,id=agent,path=${RUN}/agent.sock,server=on,wait=off`,
      "-device", "virtserialport,bus=vserial.0,chardev=agent,name=agent.channel.0",
      "-chardev", `socket,id=chr-fs0,path=${RUN}/vfsd-fs0.sock`,
      "-device", "vhost-user-fs-device,id=fs0,chardev=chr-fs0,tag=vmpod,queue-size=1024",
    ]);
  });

  it("boots q35 under KVM with PCI devices and no tsc_early_khz", () => {
    const spec: VmSpec = { ...base, ...guest, machine: "q35", accel: "kvm", vcpus: 1, memoryMiB: 512, tscKhz: 2596136 };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "q35,vmport=off,sata=off",
      "-accel", "kvm", "-cpu", "host",
      "-smp", "1",
      "-m", "512M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      ...CONTROL,
      "-kernel", "/guest/vmlinuz",
      "-initrd", "/guest/initrd.img",
      "-append", "console=ttyS0 quiet panic=-1",
      "-blockdev", "driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/guest/root.erofs",
      "-device", "virtio-blk-pci,drive=rootfs,id=rootfs-blk",
      "-device", "virtio-serial-pci,id=vserial",
      "-chardev", `socket,id=agent,path=${RUN}/agent.sock,server=on,wait=off`,
      "-device", "virtserialport,bus=vserial.0,chardev=agent,name=agent.channel.0",
    ]);
  });

  it("shares a directory on q35 and leaves root ports for hot-plug", () => {
    const spec: VmSpec = { ...base, ...guest, ...share, machine: "q35", hotplugPorts: 2 };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "q35,vmport=off,sata=off,memory-backend=mem",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "2",
      "-m", "256M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-object", "memory-backend-memfd,id=mem,size=256M,share=on",
      ...CONTROL,
      "-kernel", "/guest/vmlinuz",
      "-initrd", "/guest/initrd.img",
      "-append", "console=ttyS0 quiet panic=-1",
      "-device", "pcie-root-port,id=hp0,bus=pcie.0,chassis=1",
      "-device", "pcie-root-port,id=hp1,bus=pcie.0,chassis=2",
      "-blockdev", "driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/guest/root.erofs",
      "-device", "virtio-blk-pci,drive=rootfs,id=rootfs-blk",
      "-device", "virtio-serial-pci,id=vserial",
      "-chardev", `socket,id=agent,path=${RUN}/agent.sock,server=on,wait=off`,
      "-device", "virtserialport,bus=vserial.0,chardev=agent,name=agent.channel.0",
      "-chardev", `socket,id=chr-fs0,path=${RUN}/vfsd-fs0.sock`,
      "-device", "vhost-user-fs-pci,id=fs0,chardev=chr-fs0,tag=vmpod,queue-size=1024",
    ]);
  });

  it("starts paused with firmware only, and shares memory for a later share", () => {
    const spec: VmSpec = { ...base, machine: "q35", paused: true, sharedMemory: true, vcpus: 1, memoryMiB: 128 };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "q35,vmport=off,sata=off,memory-backend=mem",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "1",
      "-m", "128M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-S",
      "-object", "memory-backend-memfd,id=mem,size=128M,share=on",
      ...CONTROL,
    ]);
  });

  it("puts guest RAM in the spec's memory file, shared, instead of a memfd", () => {
    const spec: VmSpec = { ...base, machine: "q35", paused: true, incoming: true, memoryFile: { path: `${RUN}/mem,ory`, copyOf: "/tpl/memory" }, vcpus: 1, memoryMiB: 128 };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "q35,vmport=off,sata=off,memory-backend=mem",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "1",
      "-m", "128M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-S",
      "-incoming", "defer",
      "-object", `memory-backend-file,id=mem,size=128M,mem-path=${RUN}/mem,,ory,share=on`,
      ...CONTROL,
    ]);
    const withShare = buildQemuArgs({ ...spec, ...share, machine: "microvm" });
    assert.equal(withShare.filter((a) => a.startsWith("memory-backend")).length, 1, "one backend, the file, with a share too");
    assert.ok(withShare.includes("microvm,x-option-roms=off,isa-serial=on,rtc=on,memory-backend=mem"));
  });

  it("gives a microvm a virtio-scsi controller for disks added later, after its other devices", () => {
    const spec: VmSpec = { ...base, ...guest, blockHotplug: { driver: "virtio-scsi" } };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec), [
      "-name", "vmpod-pod1",
      "-machine", "microvm,x-option-roms=off,isa-serial=on,rtc=on",
      "-accel", "tcg,thread=multi", "-cpu", "max",
      "-smp", "2",
      "-m", "256M",
      "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
      "-global", "virtio-mmio.force-legacy=false",
      ...CONTROL,
      "-kernel", "/guest/vmlinuz",
      "-initrd", "/guest/initrd.img",
      "-append", "console=ttyS0 quiet panic=-1",
      "-blockdev", "driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/guest/root.erofs",
      "-device", "virtio-blk-device,drive=rootfs,id=rootfs-blk",
      "-device", "virtio-serial-device,id=vserial",
      "-chardev", `socket,id=agent,path=${RUN}/agent.sock,server=on,wait=off`,
      "-device", "virtserialport,bus=vserial.0,chardev=agent,name=agent.channel.0",
      "-device", "virtio-scsi-device,id=scsi0",
    ]);
  });

  it("gives q35 a virtio-scsi-pci controller, after the share", () => {
    const spec: VmSpec = { ...base, ...guest, ...share, machine: "q35", blockHotplug: { driver: "virtio-scsi" } };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec).slice(-6), [
      "-chardev", `socket,id=chr-fs0,path=${RUN}/vfsd-fs0.sock`,
      "-device", "vhost-user-fs-pci,id=fs0,chardev=chr-fs0,tag=vmpod,queue-size=1024",
      "-device", "virtio-scsi-pci,id=scsi0",
    ]);
  });

  it("adds no controller for virtio-blk disks (each gets a root port when added)", () => {
    const spec: VmSpec = { ...base, ...guest, machine: "q35", hotplugPorts: 1, blockHotplug: { driver: "virtio-blk" } };
    validateSpec(spec);
    assert.ok(!buildQemuArgs(spec).some((a) => a.includes("scsi")));
  });

  it("gives a microvm its network cards last, on the taps QEMU inherits as descriptors 3, 4, ...", () => {
    const network = {
      nics: [
        { id: "net0", mac: "52:54:00:AB:CD:01", tapFd: 41 },
        { id: "net1", mac: "52:54:00:ab:cd:02", tapFd: 17 },
      ],
    };
    const spec: VmSpec = { ...base, ...guest, blockHotplug: { driver: "virtio-scsi" }, network };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec).slice(-10), [
      "-device", "virtio-scsi-device,id=scsi0",
      "-netdev", "tap,id=net0,fd=3",
      "-device", "virtio-net-device,netdev=net0,mac=52:54:00:ab:cd:01",
      "-netdev", "tap,id=net1,fd=4",
      "-device", "virtio-net-device,netdev=net1,mac=52:54:00:ab:cd:02",
    ]);
    assert.deepEqual(passedFds(spec), [41, 17]);
  });

  it("gives q35 PCI network cards without an option ROM", () => {
    const spec: VmSpec = { ...base, ...guest, machine: "q35", network: { nics: [{ id: "net0", mac: "52:54:00:ab:cd:01", tapFd: 9 }] } };
    validateSpec(spec);
    // prettier-ignore
    assert.deepEqual(buildQemuArgs(spec).slice(-4), [
      "-netdev", "tap,id=net0,fd=3",
      "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:ab:cd:01,romfile=",
    ]);
  });

  it("passes no descriptors and adds no card without a network", () => {
    const spec: VmSpec = { ...base, ...guest };
    assert.deepEqual(passedFds(spec), []);
    assert.deepEqual(passedFds({ ...spec, network: { nics: [] } }), []);
    assert.ok(!buildQemuArgs({ ...spec, network: { nics: [] } }).some((a) => a.includes("net")));
  });

  it("doubles commas inside option values but not in plain arguments", () => {
    const dir = "/tmp/a,b";
    const spec: VmSpec = {
      ...base,
      qmpSocket: `${dir}/qmp.sock`,
      consoleLog: `${dir}/console.log`,
      boot: { kernel: `${dir}/vmlinuz`, params: ["x=1,2"] },
      rootImage: `${dir}/root.erofs`,
    };
    const args = buildQemuArgs(spec);
    assert.ok(args.includes("socket,id=qmp,path=/tmp/a,,b/qmp.sock,server=on,wait=off"));
    assert.ok(args.includes("file,id=console,path=/tmp/a,,b/console.log"));
    assert.ok(args.includes("driver=raw,node-name=rootfs,read-only=on,file.driver=file,file.filename=/tmp/a,,b/root.erofs"));
    assert.ok(args.includes("/tmp/a,b/vmlinuz"));
    assert.ok(args.includes("x=1,2"));
    assert.equal(optValue("a,,b"), "a,,,,b");
  });
});

describe("vm spec", () => {
  const invalid = (spec: VmSpec, pattern: RegExp) =>
    assert.throws(
      () => validateSpec(spec),
      (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message),
    );

  it("refuses bad values with InvalidArgument", () => {
    invalid({ ...base, id: "../x" }, /id/);
    invalid({ ...base, vcpus: 0 }, /vcpus/);
    invalid({ ...base, memoryMiB: 1.5 }, /memoryMiB/);
    invalid({ ...base, runDir: "relative/dir" }, /runDir/);
    invalid({ ...base, runDir: "/" }, /runDir/);
    invalid({ ...base, qmpSocket: `/${"x".repeat(120)}/qmp.sock` }, /unix socket allows/);
    invalid({ ...base, boot: { kernel: "/k", params: ["ok", " "] } }, /kernel parameter/);
    invalid({ ...base, ...share, sharedFs: { ...share.sharedFs, tag: "a".repeat(37) } }, /tag/);
    invalid({ ...base, ...share, sharedFs: { ...share.sharedFs, sourceDir: "/a,b" } }, /comma/);
    invalid({ ...base, sharedFs: share.sharedFs }, /virtiofsd settings/);
    invalid({ ...base, hotplugPorts: 1 }, /q35/);
    invalid({ ...base, tscKhz: -1 }, /tscKhz/);
    invalid({ ...base, memoryFile: { path: "memory" } }, /memory file must be an absolute path/);
    invalid({ ...base, memoryFile: { path: "/m", copyOf: "tpl/memory" } }, /memory file's source/);
    invalid({ ...base, memoryFile: { path: "/run/p/memory", copyOf: "/run/p/../p/memory" } }, /its own source/);
    invalid({ ...base, blockHotplug: { driver: "virtio-blk" } }, /q35/);
    invalid({ ...base, machine: "q35", blockHotplug: { driver: "virtio-blk" } }, /hotplugPorts/);
    invalid({ ...base, blockHotplug: { driver: "ide" as "virtio-scsi" } }, /block device driver/);
    const nic = { id: "net0", mac: "52:54:00:00:00:01", tapFd: 5 };
    const nics = (...list: { id: string; mac: string; tapFd: number }[]): VmSpec => ({ ...base, network: { nics: list } });
    invalid(nics({ ...nic, id: "0net" }), /id/);
    invalid(nics({ ...nic, id: "net,0" }), /id/);
    invalid(nics(nic, { ...nic, mac: "52:54:00:00:00:02", tapFd: 6 }), /net0 is used twice/);
    invalid(nics({ ...nic, mac: "52:54:00:00:01" }), /MAC/);
    invalid(nics({ ...nic, mac: "52-54-00-00-00-01" }), /MAC/);
    invalid(nics({ ...nic, mac: "01:00:5e:00:00:01" }), /unicast/);
    invalid(nics({ ...nic, mac: "00:00:00:00:00:00" }), /unicast/);
    invalid(nics(nic, { id: "net1", mac: "52:54:00:00:00:01".toUpperCase(), tapFd: 6 }), /MAC address 52:54:00:00:00:01 is used twice/);
    invalid(nics({ ...nic, tapFd: -1 }), /descriptor/);
    invalid(nics({ ...nic, tapFd: 1.5 }), /descriptor/);
    invalid(nics(nic, { id: "net1", mac: "52:54:00:00:00:02", tapFd: 5 }), /descriptor 5 is used twice/);
    invalid(nics(...Array.from({ length: 9 }, (_, i) => ({ id: `n${i}`, mac: `52:54:00:00:00:1${i}`, tapFd: 10 + i }))), /at most 8/);
  });

  it("is built from the configuration, with the guest's kernel parameters before the configured ones", () => {
    const config = { ...defaultConfig("/guest").hypervisor, machineType: "microvm" as const, kernelParams: ["debug"] };
    const spec = vmSpecFromConfig(config, {
      id: "pod1",
      runDir: RUN,
      accel: "tcg",
      tscKhz: 2000000,
      kernelParams: ["console=ttyS0"],
      share: { tag: "vmpod", sourceDir: "/run/vmpod/shared/pod1" },
    });
    validateSpec(spec);
    assert.deepEqual(spec, {
      id: "pod1",
      qemuPath: "/usr/bin/qemu-system-x86_64",
      runDir: RUN,
      machine: "microvm",
      accel: "tcg",
      vcpus: 1,
      memoryMiB: 256,
      boot: { kernel: "/guest/vmlinux", initrd: "/guest/initrd.img", params: ["console=ttyS0", "debug"] },
      rootImage: "/guest/root.erofs",
      agent: { kind: "virtio-serial", socketPath: `${RUN}/agent.sock`, name: "agent.channel.0" },
      sharedFs: { tag: "vmpod", sourceDir: "/run/vmpod/shared/pod1", socketPath: `${RUN}/vfsd-fs0.sock` },
      virtiofsd: { daemonPath: "/usr/lib/qemu/virtiofsd", cache: "auto", threadPoolSize: 1 },
      qmpSocket: `${RUN}/qmp.sock`,
      consoleLog: `${RUN}/console.log`,
      tscKhz: 2000000,
    });
  });

  it("asks for a virtio-scsi controller when image layers go to the VM as disks", () => {
    const config = { ...defaultConfig("/guest").hypervisor, machineType: "microvm" as const, disableBlockDeviceUse: false };
    const spec = vmSpecFromConfig(config, { id: "pod1", runDir: RUN, accel: "tcg" });
    validateSpec(spec);
    assert.deepEqual(spec.blockHotplug, { driver: "virtio-scsi" });
    assert.equal(buildQemuArgs(spec).at(-1), "virtio-scsi-device,id=scsi0");
    const off = vmSpecFromConfig(defaultConfig("/guest").hypervisor, { id: "pod1", runDir: RUN, accel: "tcg" });
    assert.equal(off.blockHotplug, undefined, "none with disable_block_device_use = true (the default)");
  });

  it("refuses a share when the configuration has no shared file system", () => {
    const config = { ...defaultConfig("/guest").hypervisor, sharedFs: "none" as const };
    assert.throws(
      () => vmSpecFromConfig(config, { id: "p", runDir: RUN, accel: "tcg", share: { tag: "t", sourceDir: "/s" } }),
      (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument",
    );
  });
});
