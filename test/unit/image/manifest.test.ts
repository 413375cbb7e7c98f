import assert from "node:assert/strict";
import { VmpodError, type ErrorKind } from "../../../src/common/errors.js";
import { digestOf } from "../../../src/image/digest.js";
import {
  MediaType,
  detectMediaType,
  layerCompression,
  normalizePlatform,
  parseImageConfig,
  parseIndex,
  parseManifest,
  parseManifestOrIndex,
  parsePlatform,
  selectPlatform,
  type ImageIndex,
} from "../../../src/image/manifest.js";
import type { Descriptor, Platform } from "../../../src/image/types.js";

const d = (n: number) => digestOf(`blob ${n}`);
const json = (v: unknown) => Buffer.from(JSON.stringify(v));

function rejects(fn: () => unknown, kind: ErrorKind, message: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof VmpodError, `expected a VmpodError, got ${String(err)}`);
    assert.equal(err.kind, kind);
    assert.match(err.message, message);
    return true;
  });
}

const ociManifest = {
  schemaVersion: 2,
  mediaType: MediaType.ociManifest,
  config: { mediaType: MediaType.ociConfig, digest: d(0), size: 100 },
  layers: [
    { mediaType: MediaType.ociLayerGzip, digest: d(1), size: 10 },
    { mediaType: MediaType.ociLayerZstd, digest: d(2), size: 20, annotations: { a: "b" } },
    { mediaType: MediaType.ociLayer, digest: d(3), size: 0 },
  ],
  annotations: { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" },
};

function entry(n: number, platform?: Platform, mediaType: string = MediaType.ociManifest): Descriptor {
  return { mediaType, digest: d(n), size: 500 + n, ...(platform ? { platform } : {}) };
}

describe("image manifests", () => {
  it("parses an OCI manifest", () => {
    const m = parseManifest(json(ociManifest));
    assert.equal(m.mediaType, MediaType.ociManifest);
    assert.deepEqual(m.config, { mediaType: MediaType.ociConfig, digest: d(0), size: 100 });
    assert.deepEqual(
      m.layers.map((l) => [l.digest, l.size, layerCompression(l.mediaType)]),
      [
        [d(1), 10, "gzip"],
        [d(2), 20, "zstd"],
        [d(3), 0, "none"],
      ],
    );
    assert.deepEqual(m.layers[1]?.annotations, { a: "b" });
    assert.equal(m.annotations?.["org.opencontainers.image.created"], "2024-01-01T00:00:00Z");
  });

  it("parses a Docker schema 2 manifest", () => {
    const m = parseManifest(
      json({
        schemaVersion: 2,
        mediaType: MediaType.dockerManifest,
        config: { mediaType: MediaType.dockerConfig, digest: d(0), size: 7 },
        layers: [{ mediaType: MediaType.dockerLayerGzip, digest: d(1), size: 3 }],
      }),
    );
    assert.equal(m.mediaType, MediaType.dockerManifest);
    assert.equal(layerCompression(m.layers[0]?.mediaType ?? ""), "gzip");
  });

  it("tells the kind by the mediaType field, then Content-Type, then the document's shape", () => {
    const bare: Record<string, unknown> = { ...ociManifest };
    delete bare["mediaType"];
    assert.equal(detectMediaType(json(ociManifest), MediaType.dockerManifest), MediaType.ociManifest, "the field wins");
    assert.equal(detectMediaType(json(bare), `${MediaType.dockerManifest}; charset=utf-8`), MediaType.dockerManifest);
    assert.equal(detectMediaType(json(bare), "application/json"), MediaType.ociManifest);
    assert.equal(detectMediaType(json({ schemaVersion: 2, manifests: [] })), MediaType.ociIndex);
    const either = parseManifestOrIndex(json({ schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [entry(1, { os: "linux", architecture: "amd64" }, MediaType.dockerManifest)] }));
    assert.equal(either.kind, "index");
    assert.equal(parseManifestOrIndex(json(ociManifest)).kind, "manifest");
  });

  it("refuses schema 1, other documents and broken ones", () => {
    rejects(() => parseManifest(json({ schemaVersion: 1, name: "x", tag: "y", fsLayers: [] })), "Unimplemented", /schema 1/);
    rejects(() => detectMediaType(json({ schemaVersion: 2 }), MediaType.dockerSchema1Signed), "Unimplemented", /schema 1/);
    rejects(() => parseManifest(json({ ...ociManifest, mediaType: MediaType.dockerSchema1 })), "Unimplemented", /schema 1/);
    rejects(() => parseManifest(Buffer.from("{not json")), "InvalidArgument", /not valid JSON/);
    rejects(() => parseManifest(json([1])), "InvalidArgument", /not a JSON object/);
    rejects(() => parseManifest(json({ ...ociManifest, schemaVersion: 3 })), "InvalidArgument", /schemaVersion is 3/);
    rejects(() => parseManifest(json({ ...ociManifest, mediaType: "application/vnd.example+json" })), "InvalidArgument", /unsupported manifest media type/);
    rejects(() => parseManifest(json({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [] })), "InvalidArgument", /expected an image manifest/);
    rejects(() => parseIndex(json(ociManifest)), "InvalidArgument", /expected an image index/);
    rejects(() => parseManifest(json({ ...ociManifest, config: { ...ociManifest.config, digest: "sha256:xyz" } })), "InvalidArgument", /manifest config digest/);
    rejects(() => parseManifest(json({ ...ociManifest, config: { ...ociManifest.config, size: -1 } })), "InvalidArgument", /size -1/);
    rejects(
      () => parseManifest(json({ ...ociManifest, config: { ...ociManifest.config, mediaType: "application/vnd.cncf.helm.config.v1+json" } })),
      "InvalidArgument",
      /not a container image/,
    );
    rejects(() => parseManifest(json({ ...ociManifest, layers: undefined })), "InvalidArgument", /no layers list/);
  });

  it("refuses foreign and unknown layers", () => {
    rejects(() => layerCompression(MediaType.dockerLayerForeignGzip), "Unimplemented", /foreign \(non-distributable\)/);
    rejects(() => layerCompression(MediaType.ociLayerNondistributableGzip), "Unimplemented", /foreign/);
    rejects(() => layerCompression("application/octet-stream"), "InvalidArgument", /unsupported layer media type/);
    const foreign = { ...ociManifest, layers: [{ mediaType: MediaType.dockerLayerForeignGzip, digest: d(1), size: 1, urls: ["https://x.example/l"] }] };
    rejects(() => parseManifest(json(foreign)), "Unimplemented", /foreign/);
  });
});

describe("platforms", () => {
  const amd64 = { os: "linux", architecture: "amd64" };
  const index: ImageIndex = {
    mediaType: MediaType.ociIndex,
    manifests: [
      entry(1, amd64),
      entry(2, { os: "linux", architecture: "arm", variant: "v6" }),
      entry(3, { os: "linux", architecture: "arm", variant: "v7" }),
      entry(4, { os: "linux", architecture: "arm64", variant: "v8" }),
      entry(5, { os: "linux", architecture: "s390x" }),
      entry(6, { os: "unknown", architecture: "unknown" }),
      entry(7),
    ],
  };

  it("parses and normalizes platform strings", () => {
    assert.deepEqual(parsePlatform("linux/arm64/v8"), { os: "linux", architecture: "arm64", variant: "v8" });
    assert.deepEqual(parsePlatform("linux/amd64"), amd64);
    rejects(() => parsePlatform("linux"), "InvalidArgument", /os\/architecture/);
    rejects(() => parsePlatform("linux/amd64/v1/x"), "InvalidArgument", /os\/architecture/);
    rejects(() => parsePlatform("linux//v1"), "InvalidArgument", /os\/architecture/);
    assert.deepEqual(normalizePlatform({ os: "linux", architecture: "aarch64" }), { os: "linux", architecture: "arm64", variant: "v8" });
    assert.deepEqual(normalizePlatform({ os: "linux", architecture: "x86_64" }), amd64);
    assert.deepEqual(normalizePlatform({ os: "linux", architecture: "amd64", variant: "v1" }), amd64);
    assert.deepEqual(normalizePlatform({ os: "linux", architecture: "arm" }), { os: "linux", architecture: "arm", variant: "v7" });
  });

  it("chooses the entry of the platform asked for", () => {
    assert.equal(selectPlatform(index, "linux/amd64").digest, d(1));
    assert.equal(selectPlatform(index, "linux/arm64").digest, d(4), "arm64 means arm64/v8");
    assert.equal(selectPlatform(index, "linux/arm64/v8").digest, d(4));
    assert.equal(selectPlatform(index, "linux/arm/v7").digest, d(3), "the exact variant wins over an older one");
    assert.equal(selectPlatform(index, "linux/arm/v6").digest, d(2));
    assert.equal(selectPlatform(index, "linux/s390x").digest, d(5));
  });

  it("matches an arm64 entry without a variant, and prefers the exact one", () => {
    const plain = { mediaType: MediaType.ociIndex, manifests: [entry(1, { os: "linux", architecture: "arm64" })] };
    assert.equal(selectPlatform(plain, "linux/arm64/v8").digest, d(1));
    const both = { mediaType: MediaType.ociIndex, manifests: [entry(1, amd64), entry(2, { ...amd64, variant: "v3" })] };
    assert.equal(selectPlatform(both, "linux/amd64").digest, d(1));
    assert.equal(selectPlatform(both, "linux/amd64/v3").digest, d(2));
    assert.equal(selectPlatform(both, "linux/amd64/v2").digest, d(1), "an older variant runs on a newer machine");
    const onlyV3 = { mediaType: MediaType.ociIndex, manifests: [entry(2, { ...amd64, variant: "v3" })] };
    rejects(() => selectPlatform(onlyV3, "linux/amd64"), "NotFound", /linux\/amd64\/v3/);
    const arm = { mediaType: MediaType.ociIndex, manifests: [entry(1, { os: "linux", architecture: "arm", variant: "v5" })] };
    assert.equal(selectPlatform(arm, "linux/arm/v7").digest, d(1));
  });

  it("says which platforms exist when the one asked for does not", () => {
    rejects(() => selectPlatform(index, "linux/riscv64"), "NotFound", /no image for platform linux\/riscv64 in the index; it has linux\/amd64, linux\/arm\/v6, linux\/arm\/v7, linux\/arm64\/v8, linux\/s390x$/);
    rejects(() => selectPlatform(index, "windows/amd64"), "NotFound", /windows\/amd64/);
    rejects(() => selectPlatform({ mediaType: MediaType.ociIndex, manifests: [entry(7)] }, "linux/amd64"), "NotFound", /no platform-specific images/);
    rejects(() => selectPlatform(index, "linux"), "InvalidArgument", /os\/architecture/);
  });

  it("never picks a nested index or an attestation", () => {
    const nested = { mediaType: MediaType.ociIndex, manifests: [entry(1, amd64, MediaType.ociIndex), entry(2, amd64)] };
    assert.equal(selectPlatform(nested, "linux/amd64").digest, d(2));
  });
});

describe("image configs", () => {
  const config = {
    architecture: "amd64",
    os: "linux",
    config: {
      User: "1000:1000",
      Env: ["PATH=/usr/bin:/bin", "A=b"],
      Entrypoint: ["/entry"],
      Cmd: ["sh", "-c", "true"],
      WorkingDir: "/work",
      StopSignal: "SIGQUIT",
      ExposedPorts: { "80/tcp": {}, "53/udp": {} },
      Volumes: { "/data": {} },
      Labels: { maintainer: "me" },
    },
    rootfs: { type: "layers", diff_ids: [d(10), d(11)] },
    history: [{ created_by: "x" }],
  };

  it("reads how to run the image, its diff ids and platform", () => {
    const info = parseImageConfig(json(config));
    assert.deepEqual(info.runtime, {
      user: "1000:1000",
      env: ["PATH=/usr/bin:/bin", "A=b"],
      entrypoint: ["/entry"],
      cmd: ["sh", "-c", "true"],
      workingDir: "/work",
      stopSignal: "SIGQUIT",
      exposedPorts: ["80/tcp", "53/udp"],
      volumes: ["/data"],
      labels: { maintainer: "me" },
    });
    assert.deepEqual(info.diffIds, [d(10), d(11)]);
    assert.deepEqual(info.platform, { os: "linux", architecture: "amd64" });
  });

  it("accepts a config with nulls and no config object", () => {
    const info = parseImageConfig(json({ architecture: "arm64", variant: "v8", os: "linux", config: { Entrypoint: null, Cmd: null, Env: null, User: "" }, rootfs: { type: "layers", diff_ids: [] } }));
    assert.deepEqual(info.runtime, { env: [], entrypoint: [], cmd: [], exposedPorts: [], volumes: [], labels: {} });
    assert.deepEqual(info.platform, { os: "linux", architecture: "arm64", variant: "v8" });
    assert.deepEqual(parseImageConfig(json({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [d(1)] } })).diffIds, [d(1)]);
  });

  it("refuses configs it cannot trust", () => {
    rejects(() => parseImageConfig(json({ ...config, rootfs: { type: "other", diff_ids: [] } })), "InvalidArgument", /rootfs.type is "other"/);
    rejects(() => parseImageConfig(json({ ...config, rootfs: undefined })), "InvalidArgument", /no rootfs/);
    rejects(() => parseImageConfig(json({ ...config, rootfs: { type: "layers", diff_ids: ["sha256:1"] } })), "InvalidArgument", /diff id/);
    rejects(() => parseImageConfig(json({ ...config, os: undefined })), "InvalidArgument", /os or architecture/);
    rejects(() => parseImageConfig(json({ ...config, config: { Env: "A=b" } })), "InvalidArgument", /config.Env is not a list/);
    rejects(() => parseImageConfig(json({ ...config, config: { Labels: { a: 1 } } })), "InvalidArgument", /config.Labels/);
  });
});
