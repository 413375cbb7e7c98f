/**
 * What the installer copies onto the node: vmpod's package (package.json,
 * the compiled dist, node_modules, the packaged config), the guest assets,
 * and the node binary the daemon runs with; its digest, which says whether
 * an installed copy is the same; and the copy itself, staged beside the
 * install dir and swapped in, so that files in use by running pod VMs (the
 * kernel, the root image) are replaced, never rewritten in place.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Stats } from "node:fs";
import { chmod, copyFile, constants, lstat, mkdir, readdir, readlink, rename, rm, stat, symlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { failedPrecondition, wrap } from "../common/errors.js";
import { exists } from "../common/fs.js";
import { Rollback } from "../common/rollback.js";
import { GUEST_ASSETS, INSTALLED_GUEST_DIR, INSTALLED_NODE } from "./layout.js";

export interface PayloadSource {
  /** vmpod's package root: package.json, dist, node_modules, config (and deploy, read by the installer). */
  readonly packageDir: string;
  /** The guest build's output: vmlinux, initrd.img, root.erofs, manifest.json. */
  readonly guestDir: string;
  /** The node binary the daemon runs with. */
  readonly nodeBinary: string;
}

/** One thing to copy: a file or directory tree, to a path relative to the install dir. */
interface Item {
  readonly from: string;
  readonly to: string;
  /** Top-level names left out of a directory (dist's tests and benchmarks). */
  readonly skip?: readonly string[];
}

/** dist's trees that only the project's own tests and benchmarks use. */
const DIST_SKIP = ["test", "e2e", "bench"];

/** The items of a payload; a missing required part is FailedPrecondition naming it. */
async function items(source: PayloadSource): Promise<Item[]> {
  const p = source.packageDir;
  const required: Item[] = [
    { from: join(p, "package.json"), to: "package.json" },
    { from: join(p, "dist"), to: "dist", skip: DIST_SKIP },
    { from: join(p, "node_modules"), to: "node_modules" },
    { from: source.nodeBinary, to: INSTALLED_NODE },
    ...GUEST_ASSETS.map((a) => ({ from: join(source.guestDir, a), to: `${INSTALLED_GUEST_DIR}/${a}` })),
  ];
  for (const item of required) {
    if (!(await exists(item.from))) {
      const hint = item.to.startsWith("guest/") ? " (build the guest: npm run build:guest)" : item.to === "dist" ? " (build vmpod: npm run build)" : "";
      throw failedPrecondition(`the installer's payload lacks ${item.from}${hint}`);
    }
  }
  // The packaged default configuration, when the package has one.
  const config = join(p, "config");
  return (await exists(config)) ? [...required, { from: config, to: "config" }] : required;
}

/** Every file, symlink and directory of an item, relative to the install dir, parents first. */
async function* walk(from: string, to: string, skip: readonly string[] = []): AsyncGenerator<{ from: string; to: string; st: Stats }> {
  // The item itself is followed when it is a symlink (guest/out/current is one); what lies inside is not.
  const st = await stat(from);
  yield { from, to, st };
  if (!st.isDirectory()) return;
  const stack: { from: string; to: string }[] = [{ from, to }];
  while (stack.length > 0) {
    const dir = stack.pop() as { from: string; to: string };
    const names = (await readdir(dir.from)).sort();
    for (const name of names) {
      if (dir.from === from && skip.includes(name)) continue;
      const child = { from: join(dir.from, name), to: `${dir.to}/${name}` };
      const cst = await lstat(child.from);
      yield { ...child, st: cst };
      if (cst.isDirectory()) stack.push(child);
    }
  }
}

/**
 * The payload's digest: every path with its type, mode, size and time of
 * change. The same build gives the same digest; a new build (or a new node
 * binary, or new guest assets) a different one.
 */
export async function payloadDigest(source: PayloadSource): Promise<string> {
  const hash = createHash("sha256");
  for (const item of await items(source)) {
    for await (const e of walk(item.from, item.to, item.skip)) {
      const type = e.st.isDirectory() ? "d" : e.st.isSymbolicLink() ? `l:${await readlink(e.from)}` : "f";
      hash.update(`${e.to}\0${type}\0${e.st.mode & 0o7777}\0${e.st.isFile() ? e.st.size : 0}\0${e.st.isFile() ? e.st.mtimeMs : 0}\n`);
    }
  }
  return hash.digest("hex");
}

/** Copies the payload into `dir`, which must not exist yet. */
async function copyPayload(source: PayloadSource, dir: string): Promise<void> {
  await mkdir(dir, { recursive: false, mode: 0o755 });
  for (const item of await items(source)) {
    await mkdir(dirname(join(dir, item.to)), { recursive: true, mode: 0o755 });
    for await (const e of walk(item.from, item.to, item.skip)) {
      const target = join(dir, e.to);
      if (e.st.isDirectory()) await mkdir(target, { mode: 0o755 });
      else if (e.st.isSymbolicLink()) await symlink(await readlink(e.from), target);
      else if (e.st.isFile()) await copyFile(e.from, target, constants.COPYFILE_FICLONE);
      else continue; // sockets, fifos, devices: nothing vmpod needs
      if (!e.st.isSymbolicLink()) await chmod(target, e.st.mode & 0o7777);
    }
  }
}

/**
 * Puts a fresh copy of the payload at `installDir`: copied beside it first,
 * then swapped in by renames, the old copy removed last (pod VMs that still
 * map its kernel or root image keep their open files). A failed copy leaves
 * the installed one as it was.
 */
export async function installPayload(source: PayloadSource, installDir: string): Promise<void> {
  const parent = dirname(installDir);
  const tag = randomBytes(6).toString("hex");
  const staging = join(parent, `.${basename(installDir)}.new-${tag}`);
  const old = join(parent, `.${basename(installDir)}.old-${tag}`);
  await using undo = new Rollback();
  undo.push("remove the staged copy", () => rm(staging, { recursive: true, force: true }));
  try {
    await copyPayload(source, staging);
  } catch (err) {
    throw wrap(`copy vmpod to ${staging}`, err);
  }
  const hadOne = await exists(installDir);
  if (hadOne) await rename(installDir, old);
  try {
    await rename(staging, installDir);
  } catch (err) {
    if (hadOne) await rename(old, installDir);
    throw wrap(`put the new copy at ${installDir}`, err);
  }
  undo.commit();
  if (hadOne) await rm(old, { recursive: true, force: true });
}
