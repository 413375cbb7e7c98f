/**
 * The pod's sysctls in the guest. The guest's network and IPC namespaces
 * are the pod's, shared by its containers (spec-policy.ts), so a sysctl of
 * those namespaces is set once in the guest by the agent, not by crun, which
 * sets sysctls only in namespaces a container has to itself. Each container
 * of the pod carries the same values; setting them again changes nothing.
 */
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import type { OciConfig } from "./oci-spec.js";

const IPC_SYSCTLS = new Set(["kernel.shmmax", "kernel.shmall", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem"]);

/** Whether a sysctl (dotted name) belongs to the network or IPC namespace, which the guest shares with every container. */
function ofSharedNamespace(name: string): boolean {
  return name.startsWith("net.") || name.startsWith("fs.mqueue.") || IPC_SYSCTLS.has(name);
}

/** Splits the config's sysctls into those crun sets (the container's own namespaces) and those the agent sets in the guest. */
export function splitGuestSysctls(config: OciConfig): { config: OciConfig; guest: Record<string, string> } {
  const all = config.linux?.sysctl;
  if (!all || Object.keys(all).length === 0) return { config, guest: {} };
  const guest: Record<string, string> = {};
  const own: Record<string, string> = {};
  for (const [name, value] of Object.entries(all)) (ofSharedNamespace(name) ? guest : own)[name] = value;
  const linux = { ...config.linux };
  if (Object.keys(own).length > 0) linux.sysctl = own;
  else delete linux.sysctl;
  return { config: { ...config, linux }, guest };
}

/**
 * "net.ipv4.conf.eth0/100.forwarding" → "net/ipv4/conf/eth0.100/forwarding"
 * (in a dotted name a slash stands for a dot inside one component).
 */
export function sysctlPath(name: string): string {
  if (!/^[A-Za-z0-9_][A-Za-z0-9_./-]*$/.test(name)) throw new VmpodError("InvalidArgument", `bad sysctl name ${JSON.stringify(name)}`);
  const parts = name.split(".").map((p) => p.replaceAll("/", "."));
  if (parts.some((p) => p === "" || p === "." || p === "..")) throw new VmpodError("InvalidArgument", `bad sysctl name ${JSON.stringify(name)}`);
  return parts.join("/");
}

/** Writes each sysctl under `procSys` (/proc/sys in the guest); a name the kernel does not have is InvalidArgument. */
export async function applySysctls(sysctls: Readonly<Record<string, string>>, procSys = "/proc/sys"): Promise<void> {
  for (const [name, value] of Object.entries(sysctls)) {
    const path = join(procSys, sysctlPath(name));
    try {
      await writeFile(path, value);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const kind = code === "ENOENT" || code === "EINVAL" ? "InvalidArgument" : "Internal";
      throw new VmpodError(kind, `set sysctl ${name}=${value} in the pod`, { cause: err });
    }
  }
}
