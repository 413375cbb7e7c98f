/**
 * vmpod's runtime-default seccomp profile: everything is allowed except the
 * system calls that reach past a container's namespaces (kernel modules,
 * the clock, reboot, keyrings, mounting, new namespaces, other processes'
 * memory), which fail with EPERM. A capability that is meant to grant one
 * of those calls lifts its rule, so a container given CAP_SYS_ADMIN can
 * mount and CAP_SYS_TIME can set the clock.
 */
import type { OciSeccomp } from "../common/oci-spec.js";

const EPERM = 1;
const ENOSYS = 38;

interface DenyRule {
  readonly names: readonly string[];
  /** Any one of these capabilities lifts the rule. */
  readonly unless: readonly string[];
  readonly errno?: number;
  /** Deny only when the first argument has this bit set (clone's namespace flags). */
  readonly flagBit?: number;
}

/** CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. */
const CLONE_NAMESPACE_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

const RULES: readonly DenyRule[] = [
  { names: ["add_key", "keyctl", "request_key"], unless: [] },
  { names: ["nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vm86", "vm86old"], unless: [] },
  { names: ["io_uring_setup", "io_uring_enter", "io_uring_register"], unless: [] },
  {
    names: [
      "mount",
      "umount",
      "umount2",
      "pivot_root",
      "setns",
      "unshare",
      "fsopen",
      "fsconfig",
      "fsmount",
      "fspick",
      "move_mount",
      "open_tree",
      "mount_setattr",
      "quotactl",
      "quotactl_fd",
      "name_to_handle_at",
      "lookup_dcookie",
      "fanotify_init",
      "swapon",
      "swapoff",
    ],
    unless: ["CAP_SYS_ADMIN"],
  },
  { names: ["bpf"], unless: ["CAP_SYS_ADMIN", "CAP_BPF"] },
  { names: ["perf_event_open"], unless: ["CAP_SYS_ADMIN", "CAP_PERFMON"] },
  { names: ["clone3"], unless: ["CAP_SYS_ADMIN"], errno: ENOSYS },
  ...CLONE_NAMESPACE_FLAGS.map((bit) => ({ names: ["clone"], unless: ["CAP_SYS_ADMIN"], flagBit: bit })),
  { names: ["reboot", "kexec_load", "kexec_file_load"], unless: ["CAP_SYS_BOOT"] },
  { names: ["init_module", "finit_module", "delete_module", "create_module", "query_module", "get_kernel_syms"], unless: ["CAP_SYS_MODULE"] },
  { names: ["kcmp", "pidfd_getfd", "process_madvise", "userfaultfd"], unless: ["CAP_SYS_PTRACE"] },
  { names: ["settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime", "clock_adjtime64"], unless: ["CAP_SYS_TIME"] },
  { names: ["acct"], unless: ["CAP_SYS_PACCT"] },
  { names: ["iopl", "ioperm"], unless: ["CAP_SYS_RAWIO"] },
  { names: ["get_mempolicy", "set_mempolicy", "mbind", "move_pages"], unless: ["CAP_SYS_NICE"] },
  { names: ["open_by_handle_at"], unless: ["CAP_DAC_READ_SEARCH"] },
  { names: ["syslog"], unless: ["CAP_SYSLOG"] },
  { names: ["vhangup"], unless: ["CAP_SYS_TTY_CONFIG"] },
];

/** The seccomp architectures of the machine this runs on (the guest is the same architecture). */
export function seccompArchitectures(arch: string = process.arch): string[] {
  switch (arch) {
    case "x64":
      return ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
    case "arm64":
      return ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
    case "s390x":
      return ["SCMP_ARCH_S390X", "SCMP_ARCH_S390"];
    case "ppc64":
      return ["SCMP_ARCH_PPC64LE"];
    default:
      return [];
  }
}

/** The profile for a process with the capabilities `caps` (in its bounding set, "CAP_" names). */
export function runtimeDefaultSeccomp(caps: ReadonlySet<string>, arch: string = process.arch): OciSeccomp {
  const syscalls: NonNullable<OciSeccomp["syscalls"]> = [];
  for (const rule of RULES) {
    if (rule.unless.some((c) => caps.has(c))) continue;
    syscalls.push({
      names: [...rule.names],
      action: "SCMP_ACT_ERRNO",
      errnoRet: rule.errno ?? EPERM,
      ...(rule.flagBit === undefined ? {} : { args: [{ index: 0, value: rule.flagBit, valueTwo: rule.flagBit, op: "SCMP_CMP_MASKED_EQ" }] }),
    });
  }
  const architectures = seccompArchitectures(arch);
  return { defaultAction: "SCMP_ACT_ALLOW", ...(architectures.length > 0 ? { architectures } : {}), syscalls };
}
