/**
 * Checks that the files a VmSpec names are there and usable before anything
 * is launched, so that a missing kernel reads "kernel not found: PATH"
 * rather than a QEMU error after the fact.
 */
import { constants } from "node:fs";
import { access, stat } from "node:fs/promises";
import { failedPrecondition, type VmpodError } from "../common/errors.js";
import type { VmSpec } from "./spec.js";

type Need = "file" | "executable" | "directory";

interface Check {
  readonly what: string;
  readonly path: string;
  readonly need: Need;
}

function checksOf(spec: VmSpec): Check[] {
  const checks: Check[] = [{ what: "QEMU binary", path: spec.qemuPath, need: "executable" }];
  if (spec.boot) {
    checks.push({ what: "kernel", path: spec.boot.kernel, need: "file" });
    if (spec.boot.initrd !== undefined) checks.push({ what: "initrd", path: spec.boot.initrd, need: "file" });
  }
  if (spec.rootImage !== undefined) checks.push({ what: "root image", path: spec.rootImage, need: "file" });
  if (spec.virtiofsd) checks.push({ what: "virtiofsd binary", path: spec.virtiofsd.daemonPath, need: "executable" });
  if (spec.sharedFs) checks.push({ what: "shared directory", path: spec.sharedFs.sourceDir, need: "directory" });
  return checks;
}

/** Throws FailedPrecondition naming the first missing or unusable file. */
export async function checkSpecFiles(spec: VmSpec): Promise<void> {
  for (const check of checksOf(spec)) {
    const problem = await checkPath(check);
    if (problem) throw problem;
  }
}

/** Checks one path; the error to throw, or undefined when it is fine. */
export async function checkPath(check: Check): Promise<VmpodError | undefined> {
  let info;
  try {
    info = await stat(check.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT" || code === "ENOTDIR") return failedPrecondition(`${check.what} not found: ${check.path}`);
    return failedPrecondition(`${check.what} ${check.path}`, err);
  }
  if (check.need === "directory") {
    if (!info.isDirectory()) return failedPrecondition(`${check.what} is not a directory: ${check.path}`);
    return undefined;
  }
  if (!info.isFile()) return failedPrecondition(`${check.what} is not a regular file: ${check.path}`);
  const mode = check.need === "executable" ? constants.X_OK : constants.R_OK;
  try {
    await access(check.path, mode);
  } catch {
    return failedPrecondition(`${check.what} is not ${check.need === "executable" ? "executable" : "readable"}: ${check.path}`);
  }
  return undefined;
}
