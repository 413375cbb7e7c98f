/**
 * The installer's record of an install, kept in the install dir: the
 * payload's digest (to tell an upgrade from a repeat), the directories it
 * had to create (to remove them again, and only them), and the
 * configuration file it wrote (to remove it only if nobody changed it since).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { internal } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import { MANIFEST_NAME } from "./layout.js";

export interface InstallManifest {
  readonly version: 1;
  /** payloadDigest() of what is installed. */
  readonly digest: string;
  /** Host paths of the directories the installer created, parents first. */
  readonly createdDirs: readonly string[];
  /** The sha256 of the configuration file the installer wrote, when it wrote one. */
  readonly configSha256?: string;
}

export async function readManifest(installDir: string): Promise<InstallManifest | undefined> {
  let text: string;
  try {
    text = await readFile(join(installDir, MANIFEST_NAME), "utf8");
  } catch {
    return undefined;
  }
  try {
    const m = JSON.parse(text) as Partial<InstallManifest>;
    if (m.version !== 1 || typeof m.digest !== "string" || !Array.isArray(m.createdDirs)) throw new Error("not a version 1 manifest");
    return {
      version: 1,
      digest: m.digest,
      createdDirs: m.createdDirs.filter((d): d is string => typeof d === "string"),
      ...(typeof m.configSha256 === "string" ? { configSha256: m.configSha256 } : {}),
    };
  } catch (err) {
    throw internal(`read ${join(installDir, MANIFEST_NAME)}`, err);
  }
}

export async function writeManifest(installDir: string, manifest: InstallManifest): Promise<void> {
  await writeFileAtomic(join(installDir, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + "\n", 0o644);
}
