/**
 * Trees for the installer's tests: a vmpod package as the installer's image
 * holds it (small stand-ins for dist, node_modules, the guest assets and the
 * node binary, and the project's real deploy/ files), and a snapshot of a
 * directory tree to compare a host root before and after.
 */
import { createHash } from "node:crypto";
import { chmod, copyFile, lstat, mkdir, readFile, readdir, readlink, symlink, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { findRepoRoot } from "../../../src/common/fs.js";
import { DEPLOY_FILES } from "../../../src/installer/host-files.js";
import type { PayloadSource } from "../../../src/installer/payload.js";

async function put(path: string, content: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, content);
  await chmod(path, mode);
}

/** A vmpod package under `dir`, as the installer's image would have it. */
export async function makeSourcePackage(dir: string): Promise<PayloadSource> {
  const repo = await findRepoRoot(import.meta.dirname);
  await put(join(dir, "package.json"), JSON.stringify({ name: "vmpod", version: "0.0.0-test", type: "module" }));
  await put(join(dir, "dist/src/main.js"), "// the daemon\n");
  await put(join(dir, "dist/src/installer/main.js"), "// the installer\n");
  await put(join(dir, "dist/guest/build/kernel-params.js"), "export const BASE_KERNEL_PARAMS = [];\n");
  await put(join(dir, "dist/test/unit/some.test.js"), "// a test\n");
  await put(join(dir, "dist/e2e/flow.test.js"), "// an e2e test\n");
  await put(join(dir, "node_modules/some-dep/index.js"), "export default 1;\n");
  await put(join(dir, "node_modules/some-dep/cli.js"), "#!/usr/bin/env node\n", 0o755);
  await mkdir(join(dir, "node_modules/.bin"), { recursive: true });
  await symlink("../some-dep/cli.js", join(dir, "node_modules/.bin/some-dep"));
  await put(join(dir, "config/configuration.toml"), "# the packaged defaults\n");
  for (const asset of ["vmlinux", "initrd.img", "root.erofs", "manifest.json"]) await put(join(dir, "guest/out/0123abcd", asset), `${asset} of build 0123abcd\n`);
  await symlink("0123abcd", join(dir, "guest/out/current"));
  await put(join(dir, "node-bin/node"), "#!/bin/sh\n# a node binary\n", 0o755);
  for (const file of Object.values(DEPLOY_FILES)) {
    await mkdir(dirname(join(dir, file)), { recursive: true });
    await copyFile(join(repo, file), join(dir, file));
  }
  return { packageDir: dir, guestDir: join(dir, "guest/out/current"), nodeBinary: join(dir, "node-bin/node") };
}

/** Every path under `root` with its type, permission bits and content (or link target). */
export async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const rel of (await readdir(root, { recursive: true })).sort()) {
    const path = join(root, rel);
    const st = await lstat(path);
    const mode = (st.mode & 0o7777).toString(8);
    if (st.isDirectory()) out[rel] = `dir ${mode}`;
    else if (st.isSymbolicLink()) out[rel] = `link -> ${await readlink(path)}`;
    else if (!st.isFile()) out[rel] = `special ${mode}`;
    else out[rel] = `file ${mode} ${createHash("sha256").update(await readFile(path)).digest("hex").slice(0, 16)}`;
  }
  return out;
}

/** A host root as a node has it before vmpod: /etc with a file, systemd's unit directory with a unit, kubelet's drop-in directory. */
export async function makeHostRoot(root: string): Promise<void> {
  await put(join(root, "etc/hostname"), "node-1\n");
  await put(join(root, "etc/systemd/system/kubelet.service"), "[Service]\nExecStart=/usr/bin/kubelet\n");
  await put(join(root, "etc/systemd/system/kubelet.service.d/10-kubeadm.conf"), "[Service]\nExecStart=\nExecStart=/usr/bin/kubelet $KUBELET_KUBEADM_ARGS\n");
  await mkdir(join(root, "run"), { recursive: true });
  await mkdir(join(root, "var/lib"), { recursive: true });
}
