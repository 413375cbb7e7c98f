/**
 * The guest kernel's command line. It is the same for every pod: anything
 * pod-specific reaches the guest later, through the agent.
 */

/**
 * The base parameters, for microvm and q35 alike, with or without KVM:
 *
 * - `console=ttyS0 quiet`: the kernel writes only warnings to the serial port
 *   (every byte on the serial port is an exit, slow under TCG);
 * - `panic=-1 reboot=t`: on a panic reboot at once, by triple fault, which
 *   works on microvm (no keyboard controller, no ACPI reset register) and q35;
 *   with QEMU's `-no-reboot` a reboot ends QEMU, so a dead guest is seen;
 * - `cryptomgr.notests`: the crypto self-tests took ~0.4 s of a TCG boot;
 * - `tsc=reliable no_timer_check`: no clocksource watchdog and no IO-APIC
 *   timer check, both of which misjudge time under a loaded TCG host;
 * - `rcupdate.rcu_expedited=1`: shorter RCU grace periods during boot;
 * - `8250.nr_uarts=1 edd=off`: no probing of serial ports and disks the guest
 *   does not have.
 *
 * The root image is found by the initramfs (/dev/vda, erofs), so there is no
 * `root=`.
 */
export const BASE_KERNEL_PARAMS: readonly string[] = [
  "console=ttyS0",
  "quiet",
  "panic=-1",
  "reboot=t",
  "cryptomgr.notests",
  "tsc=reliable",
  "no_timer_check",
  "rcupdate.rcu_expedited=1",
  "8250.nr_uarts=1",
  "edd=off",
];

/** Kernel parameter that makes the root image's init stop the VM where it would start the agent. */
export const FLOOR_PARAM = "vmpod.floor=1";

/**
 * Kernel parameter that makes the init scripts print "vmpod: UPTIME step"
 * lines at each step of the boot, to see where the time goes.
 */
export const DEBUG_PARAM = "vmpod.debug=1";

/** Console lines printed by the guest's init scripts, for hosts and tests to wait on. */
export const CONSOLE_LINES = {
  /** Printed in floor mode just before the VM stops. */
  floor: "vmpod: floor reached, stopping",
  /** Prefix of the line printed when the agent exits; the exit status follows. */
  agentExited: "vmpod: agent exited with status ",
  /** Printed by the initramfs when it cannot reach the root image. */
  rootFailed: "vmpod: cannot mount the root image",
} as const;

export interface KernelParamOptions {
  /**
   * The host's TSC frequency in kHz (src/hypervisor/accel.ts, hostTscKhz). Under TCG the guest's
   * TSC is the host's, and the guest's own calibration against the PIT fails
   * on a loaded host (9 boots in 10 here), after which the kernel hangs: pass
   * it whenever the accelerator is TCG. Harmless under KVM, where the TSC
   * frequency is the host's as well.
   */
  readonly tscKhz?: number;
  /** Stop the VM where the agent would start (the benchmark floor). */
  readonly floor?: boolean;
  /** Print the uptime at each step of the guest's init. */
  readonly debug?: boolean;
  /** More parameters, appended last. */
  readonly extra?: readonly string[];
}

/** The guest kernel's command line as a list of parameters. */
export function guestKernelParams(options: KernelParamOptions = {}): string[] {
  const params = [...BASE_KERNEL_PARAMS];
  if (options.tscKhz !== undefined) {
    if (!Number.isInteger(options.tscKhz) || options.tscKhz <= 0) throw new RangeError(`bad TSC frequency ${options.tscKhz} kHz`);
    params.push(`tsc_early_khz=${options.tscKhz}`);
  }
  if (options.floor === true) params.push(FLOOR_PARAM);
  if (options.debug === true) params.push(DEBUG_PARAM);
  params.push(...(options.extra ?? []));
  return params;
}
