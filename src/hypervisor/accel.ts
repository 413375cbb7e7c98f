/**
 * Host probes for the hypervisor: which acceleration to use, and the host's
 * TSC frequency (which a TCG guest on microvm needs to be told). The paths
 * are parameters so that tests can point them at a fake tree.
 */
import { constants } from "node:fs";
import { open, readFile } from "node:fs/promises";
import { failedPrecondition, messageOf } from "../common/errors.js";
import { exists } from "../common/fs.js";
import type { Acceleration } from "../config/types.js";
import type { Accel } from "./spec.js";

export interface AccelProbePaths {
  /** The KVM device. */
  readonly devKvm: string;
  /** Present when /dev/kvm comes from kvm_pvm (nested, shadow paging). */
  readonly kvmPvmModule: string;
}

export const HOST_ACCEL_PATHS: AccelProbePaths = {
  devKvm: "/dev/kvm",
  kvmPvmModule: "/sys/module/kvm_pvm",
};

/** The acceleration chosen, and why, in words fit for a log line. */
export interface AccelChoice {
  readonly accel: Accel;
  readonly reason: string;
}

/**
 * Resolves the configured acceleration. `auto` takes KVM only when the KVM
 * device opens read-write and is not kvm_pvm's (under which a stock kernel
 * makes no progress and `-cpu host` fails); otherwise TCG. `kvm` demands a
 * usable device (FailedPrecondition otherwise); `tcg` is taken as said.
 */
export async function chooseAccel(requested: Acceleration, paths: AccelProbePaths = HOST_ACCEL_PATHS): Promise<AccelChoice> {
  if (requested === "tcg") return { accel: "tcg", reason: "tcg requested by configuration" };
  const kvm = await probeKvm(paths);
  if (requested === "kvm") {
    if (!kvm.usable) throw failedPrecondition(`kvm requested by configuration, but ${kvm.why}`);
    return {
      accel: "kvm",
      reason: kvm.pvm ? `kvm requested by configuration (warning: ${kvm.why})` : "kvm requested by configuration",
    };
  }
  if (!kvm.usable) return { accel: "tcg", reason: `${kvm.why}: using tcg` };
  if (kvm.pvm) return { accel: "tcg", reason: `${kvm.why}: using tcg` };
  return { accel: "kvm", reason: `${paths.devKvm} is usable: using kvm` };
}

interface KvmProbe {
  readonly usable: boolean;
  readonly pvm: boolean;
  readonly why: string;
}

async function probeKvm(paths: AccelProbePaths): Promise<KvmProbe> {
  if (!(await exists(paths.devKvm))) return { usable: false, pvm: false, why: `${paths.devKvm} does not exist` };
  try {
    const fh = await open(paths.devKvm, constants.O_RDWR);
    await fh.close();
  } catch (err) {
    return { usable: false, pvm: false, why: `${paths.devKvm} cannot be opened read-write (${messageOf(err)})` };
  }
  const pvm = await exists(paths.kvmPvmModule);
  if (pvm) return { usable: true, pvm: true, why: `kvm_pvm provides ${paths.devKvm} (nested, shadow paging)` };
  return { usable: true, pvm: false, why: "" };
}

/**
 * The host's TSC frequency in kHz from /proc/cpuinfo ("cpu MHz"), when the
 * CPU's TSC is constant; undefined when unknown. Under TCG the guest's TSC
 * counts at the host's rate.
 */
export async function hostTscKhz(cpuinfoPath = "/proc/cpuinfo"): Promise<number | undefined> {
  let text: string;
  try {
    text = await readFile(cpuinfoPath, "utf8");
  } catch {
    return undefined;
  }
  const firstCpu = text.split(/\n\s*\n/)[0] ?? "";
  const flags = /^flags\s*:(.*)$/m.exec(firstCpu)?.[1]?.trim().split(/\s+/) ?? [];
  if (!flags.includes("constant_tsc")) return undefined;
  const mhz = /^cpu MHz\s*:\s*([0-9.]+)\s*$/m.exec(firstCpu)?.[1];
  if (mhz === undefined) return undefined;
  const khz = Math.round(Number(mhz) * 1000);
  return Number.isFinite(khz) && khz > 0 ? khz : undefined;
}
