import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { buffer } from "node:stream/consumers";
import type { ErrorKind } from "../../../../src/common/errors.js";
import { silentLogger } from "../../../../src/common/log.js";
import type { RegistryHostConfig } from "../../../../src/config/types.js";
import { digestOf } from "../../../../src/image/digest.js";
import { MediaType } from "../../../../src/image/manifest.js";
import { parseReference } from "../../../../src/image/reference.js";
import { RegistryClient, type RegistryClientOptions } from "../../../../src/image/registry/client.js";
import { rejectsWith } from "./expect.js";
import { FakeRegistry, json } from "./fake-registry.js";

describe("registry client: manifests and blobs", () => {
  let registry: FakeRegistry;
  let client: RegistryClient;
  const open = (options: Partial<RegistryClientOptions> = {}, hosts: Record<string, RegistryHostConfig> = {}) =>
    (client = new RegistryClient({ hosts, logger: silentLogger, ...options }));

  beforeEach(async () => {
    registry = await new FakeRegistry({ ranges: true }).start();
  });
  afterEach(async () => {
    await client?.close();
    await registry.stop();
  });

  it("pulls a manifest anonymously by tag and by digest, over plain HTTP on loopback", async () => {
    const image = registry.addImage("team/app", "v1");
    open({ userAgent: "vmpod-test/1" });
    const ref = parseReference(`${registry.host}/team/app:v1`);
    const byTag = await client.getManifest(ref);
    assert.equal(byTag.digest, image.digest);
    assert.deepEqual(byTag.bytes, image.bytes);
    assert.equal(byTag.mediaType, MediaType.ociManifest);
    assert.equal(byTag.endpoint, registry.url);
    assert.ok(registry.url.startsWith("http://"));
    const byDigest = await client.getManifest(parseReference(`${registry.host}/team/app@${image.digest}`));
    assert.equal(byDigest.digest, image.digest);
    const again = await client.getManifestByDigest(ref, image.digest);
    assert.deepEqual(again.bytes, image.bytes);

    const first = registry.requests[0];
    assert.equal(first?.path, "/v2/team/app/manifests/v1");
    assert.equal(first?.headers["user-agent"], "vmpod-test/1");
    const accept = String(first?.headers.accept);
    for (const t of [MediaType.ociIndex, MediaType.ociManifest, MediaType.dockerManifestList, MediaType.dockerManifest]) assert.ok(accept.includes(t), `Accept lists ${t}`);
    assert.equal(registry.requests[1]?.path, `/v2/team/app/manifests/${image.digest}`);
  });

  it("tells an index from a manifest", async () => {
    const index = { schemaVersion: 2, mediaType: MediaType.dockerManifestList, manifests: [] };
    registry.addManifest("multi", "latest", index, MediaType.dockerManifestList);
    open();
    const fetched = await client.getManifest(parseReference(`${registry.host}/multi`));
    assert.equal(fetched.mediaType, MediaType.dockerManifestList);
  });

  it("refuses a manifest whose bytes differ from the Docker-Content-Digest announced", async () => {
    const image = registry.addImage("app", "v1");
    registry.intercept = (req, res) => {
      if (!req.url?.includes("/manifests/")) return false;
      res.writeHead(200, { "content-type": MediaType.ociManifest, "docker-content-digest": digestOf("something else") });
      res.end(image.bytes);
      return true;
    };
    open();
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/app:v1`)), "InvalidArgument", /registry announced sha256:[0-9a-f]{64} \(Docker-Content-Digest\)/);
  });

  it("refuses bytes that are not the digest asked for, whatever the registry announces", async () => {
    const image = registry.addImage("app", "v1");
    const other = registry.addImage("app", "v2");
    registry.intercept = (req, res) => {
      if (req.url !== `/v2/app/manifests/${image.digest}`) return false;
      res.writeHead(200, { "content-type": MediaType.ociManifest, "docker-content-digest": image.digest });
      res.end(other.bytes);
      return true;
    };
    open();
    const err = await rejectsWith(client.getManifest(parseReference(`${registry.host}/app@${image.digest}`)), "InvalidArgument", /have digest sha256:.* not the sha256:/);
    assert.ok(err.message.includes(other.digest) && err.message.includes(image.digest));
  });

  it("refuses a manifest larger than 4 MiB", async () => {
    registry.intercept = (req, res) => {
      if (!req.url?.includes("/manifests/")) return false;
      res.writeHead(200, { "content-type": MediaType.ociManifest });
      res.end(Buffer.alloc(5 << 20, 0x20));
      return true;
    };
    open();
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/big:1`)), "InvalidArgument", /more than the 4194304 bytes allowed/);
  });

  it("refuses a schema 1 manifest clearly", async () => {
    registry.addManifest("old", "1", { schemaVersion: 1, name: "old", tag: "1", fsLayers: [] }, MediaType.dockerSchema1Signed);
    open();
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/old:1`)), "Unimplemented", /schema 1/);
  });

  it("downloads a blob, and resumes it with a range the registry honours", async () => {
    const image = registry.addImage("app", "v1");
    open();
    const ref = parseReference(`${registry.host}/app:v1`);
    const descriptor = { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length };
    const whole = await client.openBlob(ref, descriptor);
    assert.equal(whole.offset, 0);
    assert.deepEqual(await buffer(whole.body), image.layerBytes);
    assert.equal(registry.requests.at(-1)?.headers.range, undefined);

    const rest = await client.openBlob(ref, descriptor, { offset: 4000 });
    assert.equal(rest.offset, 4000);
    assert.deepEqual(await buffer(rest.body), image.layerBytes.subarray(4000));
    assert.equal(registry.requests.at(-1)?.headers.range, "bytes=4000-");
  });

  it("reports a range the registry ignored, and a refused range, as a download from 0", async () => {
    const plain = await new FakeRegistry({ ranges: false }).start();
    try {
      const image = plain.addImage("app", "v1");
      open();
      const ref = parseReference(`${plain.host}/app:v1`);
      const descriptor = { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length };
      const download = await client.openBlob(ref, descriptor, { offset: 4000 });
      assert.equal(download.offset, 0);
      assert.deepEqual(await buffer(download.body), image.layerBytes);
      assert.equal(plain.requests.at(-1)?.headers.range, "bytes=4000-");
    } finally {
      await plain.stop();
    }
    const image = registry.addImage("app", "v1");
    const ref = parseReference(`${registry.host}/app:v1`);
    const tooFar = await client.openBlob(ref, { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: 99_999 }, { offset: 50_000 });
    assert.equal(tooFar.offset, 0);
    assert.deepEqual(await buffer(tooFar.body), image.layerBytes);
  });

  it("follows a blob redirect to another origin without the Authorization header, and keeps it on the same origin", async () => {
    const secured = await new FakeRegistry({ auth: { kind: "basic", users: { alice: "s3cret" } } }).start();
    const storageSeen: (string | undefined)[] = [];
    const payload = Buffer.from("layer bytes from the storage");
    const storage: Server = createServer((req, res) => {
      storageSeen.push(req.headers.authorization);
      res.writeHead(200, { "content-length": payload.length });
      res.end(payload);
    });
    await new Promise<void>((resolve) => storage.listen(0, "127.0.0.1", resolve));
    const storageUrl = `http://127.0.0.1:${(storage.address() as AddressInfo).port}`;
    try {
      const digest = digestOf(payload);
      secured.intercept = (req, res) => {
        if (req.headers.authorization === undefined) return false; // let the registry challenge
        if (req.url === `/v2/app/blobs/${digest}`) {
          res.writeHead(307, { location: `/v2/app/blobs/${digest}/here` });
          res.end();
          return true;
        }
        if (req.url === `/v2/app/blobs/${digest}/here`) {
          res.writeHead(302, { location: `${storageUrl}/bucket/${digest.slice(7)}?sig=abc` });
          res.end();
          return true;
        }
        return false;
      };
      open();
      const download = await client.openBlob(parseReference(`${secured.host}/app:v1`), { mediaType: MediaType.ociLayer, digest, size: payload.length }, { credentials: { username: "alice", password: "s3cret" } });
      assert.deepEqual(await buffer(download.body), payload);
      const hops = secured.requestsTo(/\/blobs\//).map((r) => [r.path.endsWith("/here"), r.headers.authorization !== undefined]);
      assert.deepEqual(hops, [
        [false, false],
        [false, true],
        [true, true],
      ], "the same-origin redirect keeps Authorization");
      assert.deepEqual(storageSeen, [undefined], "the other origin never sees Authorization");
    } finally {
      storage.closeAllConnections();
      await new Promise<void>((resolve) => storage.close(() => resolve()));
      await secured.stop();
    }
  });

  it("maps registry answers to error kinds, with the registry's error codes as detail", async () => {
    open();
    const ref = (s: string) => parseReference(`${registry.host}/${s}`);
    await rejectsWith(client.getManifest(ref("nothing:here")), "NotFound", /manifest 127\.0\.0\.1:\d+\/nothing:here from http:\/\/127\.0\.0\.1:\d+: HTTP 404 not found \(MANIFEST_UNKNOWN: manifest unknown\)/);
    await rejectsWith(client.openBlob(ref("nothing:here"), { mediaType: MediaType.ociLayer, digest: digestOf("x"), size: 1 }), "NotFound", /BLOB_UNKNOWN/);
    const answers: Record<string, [number, ErrorKind, RegExp]> = {
      limited: [429, "ResourceExhausted", /HTTP 429 too many requests \(TOOMANYREQUESTS: slow down\)/],
      broken: [500, "Unavailable", /HTTP 500 registry error/],
      gateway: [502, "Unavailable", /HTTP 502/],
      denied: [403, "FailedPrecondition", /HTTP 403 access denied \(DENIED: no\)/],
      bad: [400, "InvalidArgument", /HTTP 400/],
    };
    registry.intercept = (req, res) => {
      const name = /^\/v2\/([^/]+)\//.exec(req.url ?? "")?.[1] ?? "";
      const answer = answers[name];
      if (!answer) return false;
      const code = { 429: "TOOMANYREQUESTS", 403: "DENIED" }[answer[0] as 429 | 403];
      json(res, answer[0], { errors: code ? [{ code, message: code === "DENIED" ? "no" : "slow down" }] : [] });
      return true;
    };
    for (const [name, [, kind, message]] of Object.entries(answers)) await rejectsWith(client.getManifest(ref(`${name}:1`)), kind, message);
  });

  it("maps connection failures to Unavailable and slow answers to DeadlineExceeded", async () => {
    open({ timeouts: { headersMs: 200 } });
    registry.intercept = () => true; // never answers
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/slow:1`)), "DeadlineExceeded", /timed out/);
    await registry.stop();
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/gone:1`)), "Unavailable", /ECONNREFUSED/);
    registry = await new FakeRegistry().start(); // for afterEach
  });

  it("stops at the caller's abort: before the answer, and in the middle of a blob", async () => {
    open();
    registry.intercept = (req, res) => {
      if (req.url?.includes("/blobs/")) {
        res.writeHead(200, { "content-length": 1_000_000 });
        res.write(Buffer.alloc(1000));
        return true; // the rest never comes
      }
      return true; // manifests never answer
    };
    const ref = parseReference(`${registry.host}/app:v1`);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await rejectsWith(client.getManifest(ref, { signal: controller.signal }), "Canceled", /canceled/);
    await rejectsWith(client.getManifest(ref, { signal: controller.signal }), "Canceled", /canceled/);

    const blobAbort = new AbortController();
    const download = await client.openBlob(ref, { mediaType: MediaType.ociLayer, digest: digestOf("x"), size: 1_000_000 }, { signal: blobAbort.signal });
    const received = new Promise<number>((resolve, reject) => {
      let n = 0;
      download.body.on("data", (c: Buffer) => {
        n += c.length;
        if (n >= 1000) blobAbort.abort();
      });
      download.body.on("error", reject);
      download.body.on("end", () => resolve(n));
    });
    await rejectsWith(received, "Canceled", /canceled/);

    const timeout = AbortSignal.timeout(50);
    await rejectsWith(client.getManifest(ref, { signal: timeout }), "DeadlineExceeded", /the caller's deadline passed/);
  });

  it("closes idempotently and refuses work after", async () => {
    registry.addImage("app", "v1");
    open();
    await client.getManifest(parseReference(`${registry.host}/app:v1`));
    await client.close();
    await client.close();
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/app:v1`)), "FailedPrecondition", /closed/);
  });
});
