/**
 * What the test images hold, entry by entry: a busybox root filesystem,
 * the layers of the image with whiteouts, the marker layers that tell images
 * apart, and the large pseudo-random layers of the pull benchmark.
 */
import { createCipheriv, createHash } from "node:crypto";
import type { LayerEntry } from "./layer.js";

export const BUSYBOX = "/bin/busybox";

export const BUSYBOX_APPLETS = [
  "sh", "ls", "cat", "echo", "sleep", "true", "false", "mkdir", "rm", "touch",
  "stat", "wc", "head", "dd", "sync", "tar", "id", "env", "hostname",
] as const;

export const PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
export const GROUP = "root:x:0:\nnogroup:x:65534:\n";

/** /bin/busybox and its applets, /etc/passwd and /etc/group, /tmp 1777, /root, and empty mount points. */
export function busyboxEntries(): LayerEntry[] {
  return [
    { type: "dir", path: "bin" },
    { type: "copy", path: "bin/busybox", from: BUSYBOX, mode: 0o755 },
    ...BUSYBOX_APPLETS.map((a): LayerEntry => ({ type: "symlink", path: `bin/${a}`, target: "busybox" })),
    { type: "dir", path: "dev" },
    { type: "dir", path: "etc" },
    { type: "file", path: "etc/group", content: GROUP },
    { type: "file", path: "etc/passwd", content: PASSWD },
    { type: "dir", path: "proc" },
    { type: "dir", path: "root", mode: 0o700 },
    { type: "dir", path: "sys" },
    { type: "dir", path: "tmp", mode: 0o1777 },
  ];
}

/** Layer 2 of the layered image: files that layer 3 partly hides. */
export function layeredAdds(): LayerEntry[] {
  return [
    { type: "dir", path: "data" },
    { type: "file", path: "data/a", content: "a from layer 2\n" },
    { type: "file", path: "data/b", content: "b from layer 2\n" },
    { type: "dir", path: "data/dir" },
    { type: "file", path: "data/dir/x", content: "x from layer 2\n" },
    { type: "dir", path: "etc" },
    { type: "file", path: "etc/motd", content: "welcome to the layered test image\n" },
  ];
}

/** Layer 3: deletes /data/a, makes /data/dir opaque (hiding x) and adds /data/dir/y. */
export function layeredWhiteouts(): LayerEntry[] {
  return [
    { type: "dir", path: "data" },
    { type: "file", path: "data/.wh.a", content: "" },
    { type: "dir", path: "data/dir" },
    { type: "file", path: "data/dir/.wh..wh..opq", content: "" },
    { type: "file", path: "data/dir/y", content: "y from layer 3\n" },
  ];
}

/** The merged view of the layered image lacks these. */
export const LAYERED_ABSENT = ["/data/a", "/data/dir/x"] as const;

/** A one-file layer telling an image apart: /marker holding `text`. */
export function markerEntries(text: string): LayerEntry[] {
  return [{ type: "file", path: "marker", content: `${text}\n` }];
}

export const LARGE_LAYERS = 4;
export const LARGE_FILES_PER_LAYER = 3;
export const LARGE_FILE_BYTES = 4 * 1024 * 1024;

/** Layer `n` (1-based) of the large image's data: files of reproducible, incompressible bytes. */
export function largeDataEntries(n: number): LayerEntry[] {
  const entries: LayerEntry[] = [{ type: "dir", path: "data" }, { type: "dir", path: `data/layer${n}` }];
  for (let i = 1; i <= LARGE_FILES_PER_LAYER; i++) {
    entries.push({ type: "file", path: `data/layer${n}/blob${i}.bin`, content: pseudoRandom(`vmpod-large-${n}-${i}`, LARGE_FILE_BYTES) });
  }
  return entries;
}

/** `size` bytes of AES-256-CTR keystream keyed by `seed`: looks random, is the same every run. */
export function pseudoRandom(seed: string, size: number): Buffer {
  const key = createHash("sha256").update(seed).digest();
  const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
  return Buffer.concat([cipher.update(Buffer.alloc(size)), cipher.final()]);
}
