/**
 * The installer's files on the node, and their removal: vmpod under
 * /opt/vmpod, the systemd unit, kubelet's drop-in and, when the node has
 * none, vmpod's configuration. Each is written only when its content
 * changes, and uninstall removes exactly what install made: the directories
 * it created (when empty), the configuration only if nobody edited it since.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, rm, rmdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { wrap } from "../common/errors.js";
import { exists, writeFileAtomic } from "../common/fs.js";
import type { Logger } from "../common/log.js";
import { HOST_PATHS, type HostRoot } from "./layout.js";
import { readManifest, writeManifest } from "./manifest.js";
import { installPayload, payloadDigest, type PayloadSource } from "./payload.js";

/** The files the installer takes from vmpod's package (its deploy/ directory). */
export const DEPLOY_FILES = {
  unit: "deploy/systemd/vmpod.service",
  kubeletDropIn: "deploy/kubelet/10-vmpod.conf",
  config: "deploy/node/configuration.toml",
  runtimeClasses: "deploy/runtimeclass.yaml",
} as const;

/** What an install changed on the node. */
export interface HostChanges {
  /** A new copy of vmpod is in place (first install or upgrade): the daemon must (re)start. */
  readonly payloadChanged: boolean;
  readonly unitChanged: boolean;
  readonly dropInChanged: boolean;
  readonly configWritten: boolean;
}

/** What an uninstall removed. */
export interface HostRemovals {
  readonly unitRemoved: boolean;
  readonly dropInRemoved: boolean;
  readonly installDirRemoved: boolean;
  /** The configuration stays when the operator wrote or edited it. */
  readonly configKept: boolean;
}

const sha256 = (data: string) => createHash("sha256").update(data).digest("hex");

/** Makes a host directory and its missing parents, noting in `created` those that were not there. */
async function ensureDir(host: HostRoot, hostDir: string, created: string[]): Promise<void> {
  const missing: string[] = [];
  for (let d = hostDir; !(await exists(host.path(d))); d = dirname(d)) missing.unshift(d);
  for (const d of missing) {
    await mkdir(host.path(d), { mode: 0o755 });
    if (!created.includes(d)) created.push(d);
  }
}

/** Writes a host file unless it already holds `content`; true when it wrote. */
async function writeIfChanged(host: HostRoot, hostPath: string, content: string, created: string[]): Promise<boolean> {
  const path = host.path(hostPath);
  const current = await readFile(path, "utf8").catch(() => undefined);
  if (current === content) return false;
  await ensureDir(host, dirname(hostPath), created);
  await writeFileAtomic(path, content, 0o644);
  return true;
}

export async function installHostFiles(host: HostRoot, source: PayloadSource, logger: Logger): Promise<HostChanges> {
  const installDir = host.path(HOST_PATHS.installDir);
  const deploy = (file: string) => readFile(join(source.packageDir, file), "utf8");
  const [unit, dropIn, config] = await Promise.all([deploy(DEPLOY_FILES.unit), deploy(DEPLOY_FILES.kubeletDropIn), deploy(DEPLOY_FILES.config)]);
  const prior = await readManifest(installDir);
  const created = [...(prior?.createdDirs ?? [])];

  const digest = await payloadDigest(source);
  const payloadChanged = prior?.digest !== digest || !(await exists(join(installDir, "package.json")));
  if (payloadChanged) {
    await ensureDir(host, dirname(HOST_PATHS.installDir), created);
    logger.info(prior ? "replacing the installed vmpod" : "installing vmpod", { dir: HOST_PATHS.installDir });
    await installPayload(source, installDir);
  }
  const unitChanged = await writeIfChanged(host, HOST_PATHS.unit, unit, created);
  const dropInChanged = await writeIfChanged(host, HOST_PATHS.kubeletDropIn, dropIn, created);

  let configSha256 = prior?.configSha256;
  let configWritten = false;
  if (!(await exists(host.path(HOST_PATHS.config)))) {
    await ensureDir(host, dirname(HOST_PATHS.config), created);
    await writeFileAtomic(host.path(HOST_PATHS.config), config, 0o644);
    configSha256 = sha256(config);
    configWritten = true;
  } else if (configSha256 === undefined) {
    logger.info("keeping the node's own vmpod configuration", { path: HOST_PATHS.config });
  }
  await writeManifest(installDir, { version: 1, digest, createdDirs: created, ...(configSha256 === undefined ? {} : { configSha256 }) });
  return { payloadChanged, unitChanged, dropInChanged, configWritten };
}

async function removeFile(path: string): Promise<boolean> {
  if (!(await exists(path))) return false;
  await rm(path, { force: true });
  return true;
}

export async function removeHostFiles(host: HostRoot, logger: Logger): Promise<HostRemovals> {
  const installDir = host.path(HOST_PATHS.installDir);
  const manifest = await readManifest(installDir);
  try {
    const dropInRemoved = await removeFile(host.path(HOST_PATHS.kubeletDropIn));
    const unitRemoved = await removeFile(host.path(HOST_PATHS.unit));

    const configPath = host.path(HOST_PATHS.config);
    const current = await readFile(configPath, "utf8").catch(() => undefined);
    let configKept = false;
    if (current !== undefined) {
      if (manifest?.configSha256 !== undefined && sha256(current) === manifest.configSha256) await rm(configPath, { force: true });
      else {
        configKept = true;
        logger.info("keeping the node's vmpod configuration: the installer did not write it, or it was edited since", { path: HOST_PATHS.config });
      }
    }

    const installDirRemoved = await exists(installDir);
    await rm(installDir, { recursive: true, force: true });
    // What an interrupted install may have left beside it.
    const parent = dirname(installDir);
    const base = `.${HOST_PATHS.installDir.split("/").pop() ?? ""}.`;
    for (const name of await readdir(parent).catch(() => [] as string[])) {
      if (name.startsWith(base)) await rm(join(parent, name), { recursive: true, force: true });
    }

    for (const dir of [...(manifest?.createdDirs ?? [])].reverse()) {
      await rmdir(host.path(dir)).catch(() => {
        // not empty (someone else's files) or gone: it stays, or is gone already
      });
    }
    return { unitRemoved, dropInRemoved, installDirRemoved, configKept };
  } catch (err) {
    throw wrap("remove vmpod's files", err);
  }
}

/** Removes the daemon's own data: the image store and CNI cache, and its state directory. */
export async function purgeDaemonData(host: HostRoot): Promise<void> {
  for (const dir of [HOST_PATHS.stateDir, HOST_PATHS.runtimeDir]) await rm(host.path(dir), { recursive: true, force: true });
}
