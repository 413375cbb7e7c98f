/**
 * A host container's devices (CRI DeviceMapping): the host node's type and
 * numbers, read with stat, for the OCI spec's device list and cgroup rules.
 */
import { stat } from "node:fs/promises";
import { VmpodError } from "../common/errors.js";
import type { ResolvedDevice } from "./container-spec.js";
import type { DeviceMapping } from "./types.js";

/** Linux's dev_t split (glibc's gnu_dev_major/minor). */
export function splitDev(rdev: number): { major: number; minor: number } {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return { major: Number(major), minor: Number(minor) };
}

export async function resolveHostDevices(mappings: readonly DeviceMapping[]): Promise<ResolvedDevice[]> {
  const out: ResolvedDevice[] = [];
  for (const m of mappings) {
    if (!m.containerPath.startsWith("/")) throw new VmpodError("InvalidArgument", `device path ${JSON.stringify(m.containerPath)} in the container is not absolute`);
    if (!/^[rwm]{0,3}$/.test(m.permissions)) throw new VmpodError("InvalidArgument", `device ${m.hostPath}: bad permissions ${JSON.stringify(m.permissions)}`);
    let st;
    try {
      st = await stat(m.hostPath);
    } catch (err) {
      throw new VmpodError("InvalidArgument", `device ${m.hostPath} cannot be read`, { cause: err });
    }
    const type = st.isCharacterDevice() ? "c" : st.isBlockDevice() ? "b" : undefined;
    if (type === undefined) throw new VmpodError("InvalidArgument", `${m.hostPath} is not a device`);
    const { major, minor } = splitDev(st.rdev);
    out.push({ device: { path: m.containerPath, type, major, minor, fileMode: st.mode & 0o777, uid: 0, gid: 0 }, permissions: m.permissions || "rwm" });
  }
  return out;
}
