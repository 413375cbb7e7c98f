/**
 * The "overlayfs" storage: a container's root filesystem made in the guest
 * from image layers that are storages already (erofs disks). Its options
 * name the lower directories as the kernel takes them, top layer first
 * (`lowerdir=a:b:c`: a above b above c), each an acquired storage's mount
 * point or a directory under one, plus mount flags (`ro`, `nodev`...). The
 * agent makes the upper and work directories itself, in a directory of its
 * own for each such storage, and removes it on release: the host names none.
 */
import { VmpodError } from "../../src/common/errors.js";
import { isMountFlag } from "./mount-options.js";
import { checkGuestPath } from "./spec-policy.js";

export interface OverlayOptions {
  /** Top layer first. */
  readonly lowerDirs: readonly string[];
  /** Mount flags, as given. */
  readonly flags: readonly string[];
}

/** mount(2)'s data is one page, with its terminating NUL. */
export const MAX_MOUNT_DATA_BYTES = 4095;

/** Parses and checks an overlayfs storage's options; InvalidArgument when they are wrong. */
export function parseOverlayOptions(options: readonly string[]): OverlayOptions {
  let lowerDirs: string[] | undefined;
  const flags: string[] = [];
  for (const option of options) {
    if (option.startsWith("lowerdir=")) {
      if (lowerDirs) throw invalid("lowerdir is given twice");
      lowerDirs = option.slice("lowerdir=".length).split(":");
      for (const dir of lowerDirs) {
        checkGuestPath("overlayfs lower directory", dir);
        if (/[,\\]/.test(dir)) throw invalid(`lower directory ${JSON.stringify(dir)} has a comma or a backslash`);
      }
    } else if (option.startsWith("upperdir=") || option.startsWith("workdir=")) {
      throw invalid(`${option.split("=")[0]} is made by the agent, not given`);
    } else if (isMountFlag(option)) {
      flags.push(option);
    } else {
      throw invalid(`unsupported option ${JSON.stringify(option)} (lowerdir= and mount flags only)`);
    }
  }
  if (!lowerDirs) throw invalid("no lowerdir option");
  return { lowerDirs, flags };
}

/** The overlay's mount data. */
export function overlayMountData(lowerDirs: readonly string[], upperDir: string, workDir: string): string {
  const data = `lowerdir=${lowerDirs.join(":")},upperdir=${upperDir},workdir=${workDir}`;
  if (Buffer.byteLength(data) > MAX_MOUNT_DATA_BYTES) {
    throw invalid(`${lowerDirs.length} lower directories make ${Buffer.byteLength(data)} bytes of mount options, more than the kernel takes (${MAX_MOUNT_DATA_BYTES}): use shorter mount points`);
  }
  return data;
}

function invalid(what: string): VmpodError {
  return new VmpodError("InvalidArgument", `overlayfs storage: ${what}`);
}
