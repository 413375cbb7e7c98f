/**
 * The guest image: what the rest of vmpod (the daemon's start-up, the QEMU
 * command line, tests and benchmarks) needs from the guest build.
 */
export { ensureGuestImage, type GuestImage, type GuestImageOptions } from "./ensure.js";
export type { GuestManifest } from "./build.js";
export {
  BASE_KERNEL_PARAMS,
  CONSOLE_LINES,
  DEBUG_PARAM,
  FLOOR_PARAM,
  guestKernelParams,
  type KernelParamOptions,
} from "./kernel-params.js";
export { GUEST_LIB_DIR, ROOT_IMAGE_ALIGN } from "./rootfs.js";
