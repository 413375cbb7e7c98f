/**
 * RuntimeConfig: the cgroup driver kubelet must match. vmpod manages host
 * cgroups through the cgroup filesystem (no systemd units), and a VM pod's
 * containers live in the guest's own cgroups.
 */
import { CgroupDriver } from "../../gen/cri/api_pb.js";
import type { RuntimeMethods, Unary } from "../deps.js";

export const runtimeConfig: Unary<RuntimeMethods["runtimeConfig"]> = async () => ({
  linux: { cgroupDriver: CgroupDriver.CGROUPFS },
});
