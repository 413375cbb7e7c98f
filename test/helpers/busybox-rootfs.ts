/** A container root filesystem made on the host from busybox-static (the smoke path's own). */
export { makeBusyboxRootfs } from "../../src/sandbox/smoke.js";
