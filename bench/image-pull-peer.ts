/**
 * The peer side of the image-pull benchmark: skopeo copying an image from
 * the test registry into an OCI layout (fetching and verifying every blob,
 * as a pull does before unpacking), and the large test image served by a
 * local docker-registry for the length of one benchmark run.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../src/common/exec.js";
import { wrap } from "../src/common/errors.js";
import { pushLarge, type PushedImage } from "../test/helpers/registry/images.js";
import { startRegistry, type RegistryAuth, type RunningRegistry } from "../test/helpers/registry/server.js";

export interface ImageRef {
  readonly host: string;
  readonly repository: string;
  readonly tag: string;
}

/**
 * `skopeo copy --src-tls-verify=false docker://HOST/REPO:TAG oci:TARGETDIR:TAG`;
 * returns the milliseconds it took. `creds` is "user:password". Fails with
 * skopeo's stderr in the message.
 */
export async function skopeoCopy(ref: ImageRef, targetDir: string, options: { readonly creds?: string } = {}): Promise<number> {
  const args = [
    "copy", "--quiet", "--src-tls-verify=false",
    ...(options.creds === undefined ? [] : ["--src-creds", options.creds]),
    `docker://${ref.host}/${ref.repository}:${ref.tag}`,
    `oci:${targetDir}:${ref.tag}`,
  ];
  const start = performance.now();
  try {
    await run("skopeo", args, { whenMissing: "install the Debian package skopeo" });
  } catch (err) {
    throw wrap(`skopeo copy ${ref.host}/${ref.repository}:${ref.tag}`, err);
  }
  return performance.now() - start;
}

/** The large image as pushed, with the registry serving it. */
export type LargeImage = PushedImage & { readonly registry: RunningRegistry };

/**
 * Starts a registry on a loopback port (no authentication unless said),
 * pushes the large test image (about 50 MB in five layers) to it, runs `fn`,
 * and stops the registry whatever `fn` did.
 */
export async function withLargeImage<T>(fn: (image: LargeImage) => Promise<T>, options: { readonly auth?: RegistryAuth } = {}): Promise<T> {
  const registry = await startRegistry(options.auth === undefined ? {} : { auth: options.auth });
  try {
    const image = await pushLarge(registry);
    return await fn({ ...image, registry });
  } finally {
    await registry.stop();
  }
}

/** A fresh directory for one copy, removed after `fn`. */
export async function withScratchDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), "vmpod-bench-pull-"));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
