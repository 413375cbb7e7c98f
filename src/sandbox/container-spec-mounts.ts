/**
 * A container's mounts in its OCI spec: the runtime's own (/proc, /dev and
 * its pts, shm and mqueue, /sys, the cgroup filesystem), the pod's files
 * (/etc/hostname, /etc/resolv.conf, /etc/hosts) unless the config mounts
 * those paths itself, then the config's mounts as binds, parents before
 * children. A config mount replaces a default one at the same destination,
 * and a config mount on /dev replaces every default under /dev.
 */
import { posix } from "node:path";
import { VmpodError } from "../common/errors.js";
import type { OciMount } from "../common/oci-spec.js";
import type { Mount } from "./types.js";

/** A config mount with its source as the OCI runtime sees it (a guest path in a pod VM). */
export interface ResolvedMount {
  readonly containerPath: string;
  readonly source: string;
  readonly readonly: boolean;
  readonly propagation: Mount["propagation"];
}

/** Files the pod shares with its containers, as the OCI runtime sees them. */
export interface PodFiles {
  readonly hostname?: string;
  readonly resolvConf?: string;
  readonly hosts?: string;
}

export function defaultMounts(opts: { privileged: boolean }): OciMount[] {
  const ro = opts.privileged ? [] : ["ro"];
  return [
    { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
    { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", ...ro] },
    { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", ...ro] },
  ];
}

/** An absolute container path, cleaned ("/a/b/../c/" → "/a/c"). */
export function cleanContainerPath(path: string): string {
  if (!path.startsWith("/") || path.includes("\0")) throw new VmpodError("InvalidArgument", `mount destination ${JSON.stringify(path)} is not an absolute path`);
  const clean = posix.normalize(path);
  return clean.length > 1 && clean.endsWith("/") ? clean.slice(0, -1) : clean;
}

const PROPAGATION: Record<Mount["propagation"], string> = {
  private: "rprivate",
  "host-to-container": "rslave",
  bidirectional: "rshared",
};

export function bindMount(destination: string, source: string, readonly: boolean, propagation: Mount["propagation"]): OciMount {
  if (source === "" || !source.startsWith("/")) throw new VmpodError("InvalidArgument", `the source of the mount on ${destination} (${JSON.stringify(source)}) is not an absolute path`);
  return { destination, type: "bind", source, options: ["rbind", PROPAGATION[propagation], readonly ? "ro" : "rw"] };
}

function depth(path: string): number {
  return path === "/" ? 0 : path.split("/").length - 1;
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);

export interface MountPlan {
  readonly mounts: OciMount[];
  /** "rshared" or "rslave" when a mount's propagation needs the root's, else undefined. */
  readonly rootfsPropagation?: string;
}

export function planMounts(input: {
  readonly privileged: boolean;
  readonly readonlyRootfs: boolean;
  readonly mounts: readonly ResolvedMount[];
  /** The config's own mounts (their container paths decide whether the pod's files are bound). */
  readonly configPaths: readonly string[];
  readonly podFiles?: PodFiles;
  /** A directory to bind at /dev/shm instead of a fresh tmpfs (the pod's shared memory). */
  readonly shm?: string;
}): MountPlan {
  const user: OciMount[] = [];
  const seen = new Set<string>();
  let rootfsPropagation: string | undefined;
  for (const m of input.mounts) {
    const destination = cleanContainerPath(m.containerPath);
    if (destination === "/") throw new VmpodError("InvalidArgument", `a mount on / (from ${m.source}) would hide the container's root filesystem`);
    if (seen.has(destination)) throw new VmpodError("InvalidArgument", `two mounts on ${destination}`);
    seen.add(destination);
    user.push(bindMount(destination, m.source, m.readonly, m.propagation));
    if (m.propagation === "bidirectional") rootfsPropagation = "rshared";
    else if (m.propagation === "host-to-container" && rootfsPropagation === undefined) rootfsPropagation = "rslave";
  }
  const configured = new Set([...seen, ...input.configPaths.map(cleanContainerPath)]);
  const files: [string, string | undefined][] = [
    ["/etc/hostname", input.podFiles?.hostname],
    ["/etc/resolv.conf", input.podFiles?.resolvConf],
    ["/etc/hosts", input.podFiles?.hosts],
  ];
  for (const [destination, source] of files) {
    if (source === undefined || configured.has(destination)) continue;
    user.push(bindMount(destination, source, input.readonlyRootfs, "private"));
    seen.add(destination);
  }
  if (input.shm !== undefined && !configured.has("/dev/shm") && !configured.has("/dev")) {
    const shm = bindMount("/dev/shm", input.shm, false, "private");
    user.push({ ...shm, options: [...(shm.options ?? []), "nosuid", "nodev", "noexec"] });
    seen.add("/dev/shm");
  }
  const devReplaced = seen.has("/dev");
  const defaults = defaultMounts({ privileged: input.privileged }).filter(
    (m) => !seen.has(m.destination) && !(devReplaced && under(m.destination, "/dev")),
  );
  // Stable: among mounts at one depth the config's order stays.
  const ordered = user.map((m, i) => ({ m, i })).sort((a, b) => depth(a.m.destination) - depth(b.m.destination) || a.i - b.i).map(({ m }) => m);
  return { mounts: [...defaults, ...ordered], ...(rootfsPropagation === undefined ? {} : { rootfsPropagation }) };
}
