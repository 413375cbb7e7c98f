/**
 * The peer of the pod-start benchmark: another CRI runtime on its own
 * socket (containerd's CRI plugin, say) starting the same busybox `sleep`
 * container with its runc handler, timed as vmpod's pods are
 * (RunPodSandbox → CreateContainer → StartContainer). Its pods use the
 * node's network: the benchmark's vmpod pods have no CNI network either.
 *
 * The peer's pods need a pause image under a name fixed in its
 * configuration, while the benchmark's registry lives only as long as a run;
 * so this file also writes that image as an OCI archive for
 * `ctr images import`:
 *
 *   npx tsx bench/peer-cri.ts pause-archive OUT.tar [NAME]   (NAME: vmpod.bench/pause:1)
 */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { createCriClient, type CriClient } from "../src/cri/client.js";
import { AMD64, buildBusybox } from "../test/helpers/registry/images.js";
import { imageConfig, imageManifest, type Document } from "../test/helpers/registry/oci.js";
import { makeTar, type WriterEntry } from "../test/helpers/tar-writer.js";

export const PAUSE_IMAGE = "vmpod.bench/pause:1";

export interface PeerCri {
  readonly client: CriClient;
  /** What the peer calls itself (Version), for the benchmark's note. */
  readonly name: string;
}

/** Connects to the peer's CRI socket and asks its name; fails when it does not answer in 10 s. */
export async function connectPeer(socket: string): Promise<PeerCri> {
  const client = createCriClient(socket);
  try {
    await client.waitForReady(10_000);
    const v = await client.runtime.version({ version: "v1" });
    return { client, name: `${v.runtimeName} ${v.runtimeVersion}` };
  } catch (err) {
    client.close();
    throw new Error(`the peer CRI at ${socket} does not answer: ${String(err)}`, { cause: err });
  }
}

/**
 * One pod started on the peer with `handler`: milliseconds from
 * RunPodSandbox to the end of StartContainer; the pod is stopped and removed
 * afterwards, untimed. `logDir` must exist.
 */
export async function peerPodStart(peer: PeerCri, image: string, name: string, logDir: string, handler = "runc"): Promise<number> {
  const rt = peer.client.runtime;
  const namespaceOptions = { network: 2 /* NODE */, pid: 1 /* CONTAINER */ };
  const config = {
    metadata: { name, uid: `uid-${name}-${process.pid}`, namespace: "bench", attempt: 0 },
    // No hostname: a pod on the node's network keeps the node's (runc refuses one without a UTS namespace).
    logDirectory: join(logDir, name),
    linux: { securityContext: { namespaceOptions } },
  };
  await mkdir(config.logDirectory, { recursive: true });
  const t = performance.now();
  const { podSandboxId } = await rt.runPodSandbox({ config, runtimeHandler: handler });
  try {
    const { containerId } = await rt.createContainer({
      podSandboxId,
      config: { metadata: { name: "c", attempt: 0 }, image: { image }, command: ["sleep", "100000"], logPath: "c.log", linux: { securityContext: { namespaceOptions } } },
      sandboxConfig: config,
    });
    await rt.startContainer({ containerId });
    return performance.now() - t;
  } finally {
    await rt.stopPodSandbox({ podSandboxId });
    await rt.removePodSandbox({ podSandboxId });
  }
}

/**
 * The pause image: the test busybox image whose command sleeps for ever,
 * as an OCI image layout in a tar, named `name` for containerd's importer.
 */
export async function pauseArchive(name = PAUSE_IMAGE): Promise<Buffer> {
  const busybox = await buildBusybox("oci");
  const config = imageConfig("oci", AMD64, { Cmd: ["/bin/sleep", "2147483647"] }, busybox.layers, "pause");
  const manifest = imageManifest("oci", config, busybox.layers);
  const blob = (d: { readonly digest: string; readonly bytes: Buffer }): WriterEntry => ({ type: "file", name: `blobs/sha256/${d.digest.replace(/^sha256:/, "")}`, body: d.bytes, mode: 0o644 });
  const index = {
    schemaVersion: 2,
    manifests: [{ mediaType: manifest.mediaType, digest: manifest.digest, size: manifest.size, annotations: { "io.containerd.image.name": name, "org.opencontainers.image.ref.name": name.split(":").at(-1) ?? "latest" } }],
  };
  const docs: Document[] = [config, manifest];
  return makeTar([
    { type: "directory", name: "blobs/", mode: 0o755 },
    { type: "directory", name: "blobs/sha256/", mode: 0o755 },
    { type: "file", name: "oci-layout", body: JSON.stringify({ imageLayoutVersion: "1.0.0" }), mode: 0o644 },
    { type: "file", name: "index.json", body: JSON.stringify(index), mode: 0o644 },
    ...docs.map(blob),
    ...busybox.layers.map(blob),
  ]);
}

async function main(args: readonly string[]): Promise<void> {
  const [command, out, name] = args;
  if (command !== "pause-archive" || out === undefined) {
    process.stderr.write("usage: npx tsx bench/peer-cri.ts pause-archive OUT.tar [NAME]\n");
    process.exit(2);
  }
  await writeFile(out, await pauseArchive(name));
  process.stdout.write(`${out}: ${name ?? PAUSE_IMAGE}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`peer-cri: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
