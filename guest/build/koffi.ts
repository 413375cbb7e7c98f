/**
 * The koffi package as the guest needs it: its package.json, its index.js and
 * whatever that requires by relative path, and the native module of linux_x64
 * alone (the package ships one for every platform).
 */
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { dirname, join, normalize } from "node:path";
import { failedPrecondition } from "../../src/common/errors.js";
import { exists } from "../../src/common/fs.js";

/** The native module's directory inside the package, for the guest's platform. */
export const KOFFI_TRIPLET = "linux_x64";

export interface KoffiFiles {
  readonly packageDir: string;
  readonly version: string;
  /** Paths relative to packageDir, sorted. */
  readonly files: readonly string[];
}

/**
 * The relative paths `index.js` requires that the guest needs: every
 * `require("./...")`, except native modules of other platforms.
 */
export function koffiRequires(indexSource: string, triplet = KOFFI_TRIPLET): string[] {
  const paths = new Set<string>();
  for (const match of indexSource.matchAll(/require\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g)) {
    const path = normalize(match[1] ?? "");
    const native = /^build\/koffi\/([^/]+)\//.exec(path);
    if (native !== null && native[1] !== triplet) continue;
    paths.add(path);
  }
  return [...paths].sort();
}

/** Finds the koffi package that `require("koffi")` resolves to from `fromDir`. */
export async function findKoffi(fromDir: string): Promise<KoffiFiles> {
  let packageJson: string;
  try {
    packageJson = createRequire(join(fromDir, "package.json")).resolve("koffi/package.json");
  } catch (err) {
    throw failedPrecondition(`the koffi package is not installed in ${fromDir} (npm install)`, err);
  }
  const packageDir = dirname(packageJson);
  const pkg = JSON.parse(await readFile(packageJson, "utf8")) as { version?: unknown; main?: unknown };
  const main = normalize(typeof pkg.main === "string" ? pkg.main : "index.js");
  const required = koffiRequires(await readFile(join(packageDir, main), "utf8"));
  const native = `build/koffi/${KOFFI_TRIPLET}/koffi.node`;
  if (!required.includes(native)) required.push(native);
  const files = [...new Set(["package.json", main, ...required])].sort();
  for (const file of files) {
    if (!(await exists(join(packageDir, file)))) throw failedPrecondition(`koffi file ${file} is missing in ${packageDir}`);
  }
  return { packageDir, version: typeof pkg.version === "string" ? pkg.version : "unknown", files };
}
