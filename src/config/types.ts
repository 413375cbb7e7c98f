/**
 * vmpod's configuration, as the rest of the program sees it: every value
 * present (defaults applied), validated, read-only.
 */
export type MachineType = "microvm" | "q35";
export type Acceleration = "auto" | "kvm" | "tcg";
export type SharedFs = "virtio-fs" | "none";

export interface HypervisorConfig {
  /** QEMU binary. */
  readonly path: string;
  readonly kernel: string;
  readonly initrd: string;
  /** The read-only root image (erofs) shared by every VM. */
  readonly image: string;
  readonly machineType: MachineType;
  /** Extra kernel command-line parameters, appended after vmpod's own. */
  readonly kernelParams: readonly string[];
  readonly defaultVcpus: number;
  /** MiB. */
  readonly defaultMemory: number;
  readonly accel: Acceleration;
  readonly sharedFs: SharedFs;
  /** virtiofsd binary. */
  readonly virtioFsDaemon: string;
  readonly blockDeviceDriver: "virtio-blk";
}

export interface AgentConfig {
  /** Milliseconds to wait for the agent to answer after the VM starts. */
  readonly dialTimeoutMs: number;
  /** Milliseconds allowed to an ordinary agent call. */
  readonly callTimeoutMs: number;
}

export interface RuntimeConfig {
  /** Where pod and VM state lives (sockets, logs, records). */
  readonly stateRoot: string;
  readonly logLevel: "debug" | "info" | "warn" | "error";
}

export interface Config {
  readonly hypervisor: HypervisorConfig;
  readonly agent: AgentConfig;
  readonly runtime: RuntimeConfig;
}
