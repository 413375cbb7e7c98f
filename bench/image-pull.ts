/**
 * image-pull: a cold pull of the ~50 MB five-layer test image from a local
 * registry into an empty store (fetch, verify, unpack, record), next to
 * skopeo copying the same image into an OCI layout in the same run (fetch
 * and verify only: skopeo does not unpack, so the peer does less work).
 * Runs alternate between the two so that both see the same machine.
 *
 *   pull_ms   vmpod's pull, median         peer: skopeo copy, median
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "../src/common/log.js";
import { defaultConfig } from "../src/config/defaults.js";
import { openImageService } from "../src/image/index.js";
import { skopeoCopy, withLargeImage, withScratchDir } from "./image-pull-peer.js";
import { emit, median } from "./report.js";

const RUNS = Number(process.env.VMPOD_BENCH_RUNS ?? 5);

export async function run(): Promise<void> {
  await withLargeImage(async (image) => {
    const ref = { host: image.host, repository: image.repository, tag: image.tag };
    const ours: number[] = [];
    const peer: number[] = [];
    // One untimed round of each warms the registry's page cache.
    await pullOnce(image.reference);
    await withScratchDir((dir) => skopeoCopy(ref, join(dir, "oci")));
    for (let i = 0; i < RUNS; i++) {
      ours.push(await pullOnce(image.reference));
      peer.push(await withScratchDir((dir) => skopeoCopy(ref, join(dir, "oci"))));
    }
    emit({
      bench: "image-pull",
      metric: "pull_ms",
      value: median(ours),
      unit: "ms",
      peer: median(peer),
      note: `${(image.size / 1e6).toFixed(1)} MB in ${image.layers.length} layers; median of ${RUNS}; peer: skopeo copy to an OCI layout (no unpack); ours: [${ours.map(Math.round).join(", ")}], peer: [${peer.map(Math.round).join(", ")}]`,
    });
  });
}

async function pullOnce(reference: string): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), "vmpod-bench-store-"));
  try {
    const { service, close } = await openImageService({ ...defaultConfig("/nonexistent").image, root }, silentLogger);
    try {
      const start = performance.now();
      await service.pull(reference);
      return performance.now() - start;
    } finally {
      await close();
    }
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
