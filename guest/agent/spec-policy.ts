/**
 * What the agent changes in a container's OCI config before crun sees it,
 * and the checks that keep a container inside its area of the guest.
 *
 * - root.path must lie inside a storage mount point (the sandbox's shared
 *   directory or one of the container's storages) once symlinks are
 *   resolved; the resolved path is what crun gets. Likewise the source of
 *   every bind mount.
 * - The guest is the pod: its network, IPC and UTS namespaces are the pod's,
 *   so containers share them (as Kata's agent makes containers share the
 *   sandbox's); those entries are dropped, and with UTS the hostname (the
 *   guest's hostname is the pod's, set by CreateSandbox). A namespace path
 *   would name a host file: refused.
 * - cgroupsPath is the spec's if it is a plain absolute path, else
 *   /vmpod/<container id>; the agent reads stats and OOM events there.
 */
import { realpath, stat } from "node:fs/promises";
import { posix } from "node:path";
import { VmpodError } from "../../src/common/errors.js";
import { isSafeId } from "../../src/common/ids.js";
import type { OciConfig } from "./oci-spec.js";

const SHARED_WITH_GUEST = new Set(["network", "ipc", "uts"]);
const KNOWN_NAMESPACES = new Set(["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"]);

export function checkId(what: string, id: string): void {
  if (!isSafeId(id)) throw new VmpodError("InvalidArgument", `bad ${what} ${JSON.stringify(id)}: expected 1-128 characters of [A-Za-z0-9_.-], not starting with . or -`);
}

/** An absolute, normalized guest path other than "/". */
export function checkGuestPath(what: string, path: string): void {
  if (path.includes("\0") || !path.startsWith("/") || posix.normalize(path) !== path || path === "/" || path.endsWith("/")) {
    throw new VmpodError("InvalidArgument", `bad ${what} ${JSON.stringify(path)}: expected an absolute, normalized path below /`);
  }
}

/**
 * `path` with symlinks resolved, if that lies inside one of `roots` (or is
 * one of them); InvalidArgument otherwise.
 */
export async function resolveInside(what: string, path: string, roots: readonly string[]): Promise<string> {
  if (!path.startsWith("/") || path.includes("\0")) throw new VmpodError("InvalidArgument", `${what} ${JSON.stringify(path)} is not an absolute path`);
  let real: string;
  try {
    real = await realpath(path);
  } catch (err) {
    throw new VmpodError("InvalidArgument", `${what} ${path} cannot be resolved`, { cause: err });
  }
  for (const root of roots) {
    const realRoot = await realpath(root).catch(() => undefined);
    if (realRoot === undefined) continue;
    if (real === realRoot || real.startsWith(realRoot === "/" ? "/" : realRoot + "/")) return real;
  }
  throw new VmpodError("InvalidArgument", `${what} ${path} (${real}) is outside the sandbox's storages`);
}

/** The cgroup (relative to the cgroup root) a container gets. */
export function chooseCgroupsPath(requested: string | undefined, containerId: string): string {
  if (requested !== undefined && requested.startsWith("/") && !requested.includes(":") && posix.normalize(requested) === requested && requested !== "/" && !requested.endsWith("/")) {
    return requested;
  }
  return `/vmpod/${containerId}`;
}

export interface GuestContext {
  readonly containerId: string;
  /** Where root.path and bind sources may point (storage mount points). */
  readonly allowedRoots: readonly string[];
}

/** The config crun gets, from the one the host sent. */
export async function adaptForGuest(config: OciConfig, ctx: GuestContext): Promise<OciConfig> {
  if (!config.process) throw new VmpodError("InvalidArgument", "the spec has no process");
  if (config.process.args.length === 0) throw new VmpodError("InvalidArgument", "the spec's process has no args");
  if (!config.root || config.root.path === "") throw new VmpodError("InvalidArgument", "the spec has no root path");
  const rootPath = await resolveInside("root path", config.root.path, ctx.allowedRoots);
  if (!(await stat(rootPath)).isDirectory()) throw new VmpodError("InvalidArgument", `root path ${config.root.path} is not a directory`);

  const mounts = [];
  for (const m of config.mounts) {
    if (!m.destination.startsWith("/")) throw new VmpodError("InvalidArgument", `mount destination ${JSON.stringify(m.destination)} is not absolute`);
    const bind = m.type === "bind" || (m.options ?? []).some((o) => o === "bind" || o === "rbind");
    if (bind) {
      const source = await resolveInside(`source of the mount on ${m.destination}`, m.source ?? "", ctx.allowedRoots);
      mounts.push({ ...m, source });
    } else {
      mounts.push({ ...m });
    }
  }

  const linux = { ...(config.linux ?? {}) };
  if (linux.namespaces) {
    for (const ns of linux.namespaces) {
      if (!KNOWN_NAMESPACES.has(ns.type)) throw new VmpodError("InvalidArgument", `unknown namespace type ${JSON.stringify(ns.type)}`);
      if (ns.path !== undefined) throw new VmpodError("InvalidArgument", `namespace ${ns.type} names a path (${ns.path}); the guest has no such files`);
    }
    linux.namespaces = linux.namespaces.filter((ns) => !SHARED_WITH_GUEST.has(ns.type));
  }
  linux.cgroupsPath = chooseCgroupsPath(config.linux?.cgroupsPath, ctx.containerId);

  // Without a UTS namespace of its own the container has the guest's (the pod's) hostname.
  const out: OciConfig = { ...config, root: { ...config.root, path: rootPath }, mounts, linux };
  delete out.hostname;
  return out;
}
