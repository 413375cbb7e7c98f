/**
 * The installer's commands on the host: systemctl, run in the host's mount
 * namespace so that the host's own systemctl talks to the host's systemd.
 * Tests give the installer a fake that records the calls instead.
 */
import { run } from "../common/exec.js";
import { wrap } from "../common/errors.js";

export interface HostCommands {
  /** Runs `systemctl ARGS...` on the host; rejects when it fails. */
  systemctl(args: readonly string[]): Promise<void>;
}

/**
 * systemctl on the node. From a pod (`hostPID: true`, privileged), the
 * command enters PID 1's mount namespace with nsenter: a chrooted systemctl
 * would see that it runs in a chroot and ignore what it is asked. On the
 * node itself (`inHostNamespace`), it runs directly.
 */
export class NodeSystemctl implements HostCommands {
  constructor(private readonly options: { readonly inHostNamespace: boolean; readonly signal?: AbortSignal }) {}

  async systemctl(args: readonly string[]): Promise<void> {
    const [cmd, argv] = this.options.inHostNamespace ? ["systemctl", [...args]] : ["nsenter", ["--target", "1", "--mount", "--", "systemctl", ...args]];
    try {
      await run(cmd, argv, {
        ...(this.options.signal ? { signal: this.options.signal } : {}),
        whenMissing: this.options.inHostNamespace ? "this host has no systemd" : "the installer's image needs util-linux (nsenter)",
      });
    } catch (err) {
      throw wrap(`systemctl ${args.join(" ")}`, err);
    }
  }
}
