/**
 * Where the image store keeps things under its root:
 *
 *   blobs/sha256/<hex>        manifests, indexes and image configs, by digest
 *   ingest/<hex>.partial      layer downloads under way (kept to resume)
 *   layers/<diff hex>/fs      an unpacked layer, in overlayfs form
 *   layers/<diff hex>/layer.json   what unpacking it found
 *   images/<config hex>.json  image records
 *   snapshots/<key>/{upper,work}   a container's writable layer
 *   tmp/                      work in progress, emptied at start
 */
import { join } from "node:path";
import { digestHex, type Digest } from "../digest.js";

export interface StoreLayout {
  readonly root: string;
  blob(digest: Digest): string;
  ingest(digest: Digest): string;
  layerDir(diffId: Digest): string;
  layerFs(diffId: Digest): string;
  layerInfo(diffId: Digest): string;
  image(id: Digest): string;
  snapshot(key: string): string;
  readonly blobsDir: string;
  readonly ingestDir: string;
  readonly layersDir: string;
  readonly imagesDir: string;
  readonly snapshotsDir: string;
  readonly tmpDir: string;
}

export function storeLayout(root: string): StoreLayout {
  const blobsDir = join(root, "blobs", "sha256");
  const ingestDir = join(root, "ingest");
  const layersDir = join(root, "layers");
  const imagesDir = join(root, "images");
  const snapshotsDir = join(root, "snapshots");
  return {
    root,
    blobsDir,
    ingestDir,
    layersDir,
    imagesDir,
    snapshotsDir,
    tmpDir: join(root, "tmp"),
    blob: (d) => join(blobsDir, digestHex(d)),
    ingest: (d) => join(ingestDir, `${digestHex(d)}.partial`),
    layerDir: (d) => join(layersDir, digestHex(d)),
    layerFs: (d) => join(layersDir, digestHex(d), "fs"),
    layerInfo: (d) => join(layersDir, digestHex(d), "layer.json"),
    image: (id) => join(imagesDir, `${digestHex(id)}.json`),
    snapshot: (key) => join(snapshotsDir, key),
  };
}
