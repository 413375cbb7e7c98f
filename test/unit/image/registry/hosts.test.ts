import assert from "node:assert/strict";
import { buffer } from "node:stream/consumers";
import { createLogger, silentLogger } from "../../../../src/common/log.js";
import type { RegistryHostConfig } from "../../../../src/config/types.js";
import { MediaType } from "../../../../src/image/manifest.js";
import { parseReference } from "../../../../src/image/reference.js";
import { RegistryClient } from "../../../../src/image/registry/client.js";
import { RegistryHosts, isLoopbackHost, upstreamUrl } from "../../../../src/image/registry/hosts.js";
import { makeTestCertificates, type TestCertificates } from "../../../helpers/tls.js";
import { rejectsWith } from "./expect.js";
import { FakeRegistry, closedPort, json } from "./fake-registry.js";

const host = (c: Partial<RegistryHostConfig> = {}): RegistryHostConfig => ({ mirrors: [], insecureSkipVerify: false, caFiles: [], ...c });

describe("registry hosts", () => {
  it("knows loopback hosts", () => {
    for (const h of ["localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:5000", "127.9.8.7:1", "[::1]:5000", "::1", "LOCALHOST:1"]) assert.equal(isLoopbackHost(h), true, h);
    for (const h of ["docker.io", "10.0.0.1:5000", "128.0.0.1", "[::2]:5000", "localhost.example", "mylocalhost:1"]) assert.equal(isLoopbackHost(h), false, h);
  });

  it("speaks https except to loopback hosts or where plain_http says so, as Docker does", () => {
    assert.equal(upstreamUrl("docker.io", undefined), "https://registry-1.docker.io");
    assert.equal(upstreamUrl("quay.io", undefined), "https://quay.io");
    assert.equal(upstreamUrl("127.0.0.1:5000", undefined), "http://127.0.0.1:5000");
    assert.equal(upstreamUrl("localhost:5000", host()), "http://localhost:5000");
    assert.equal(upstreamUrl("127.0.0.1:5000", host({ plainHttp: false })), "https://127.0.0.1:5000");
    assert.equal(upstreamUrl("reg.lan:5000", host({ plainHttp: true })), "http://reg.lan:5000");
  });

  it("lists the mirrors in order, then the registry", async () => {
    const hosts = new RegistryHosts({ "docker.io": host({ mirrors: ["https://m1.example/", "http://127.0.0.1:5001/prefix/"] }) }, { connectTimeoutMs: 1000 });
    assert.deepEqual(hosts.targets("docker.io"), [
      { url: "https://m1.example", mirror: true, registry: "docker.io" },
      { url: "http://127.0.0.1:5001/prefix", mirror: true, registry: "docker.io" },
      { url: "https://registry-1.docker.io", mirror: false, registry: "docker.io" },
    ]);
    assert.deepEqual(hosts.targets("quay.io"), [{ url: "https://quay.io", mirror: false, registry: "quay.io" }]);
    const a = await hosts.endpoint({ url: "https://quay.io", mirror: false, registry: "quay.io" });
    const b = await hosts.endpoint({ url: "https://ghcr.io", mirror: false, registry: "ghcr.io" });
    assert.equal(a.dispatcher, b.dispatcher, "one pool per TLS setting");
    await hosts.close();
    await hosts.close();
    await rejectsWith(hosts.endpoint({ url: "https://quay.io", mirror: false, registry: "quay.io" }), "FailedPrecondition", /closed/);
  });

  it("reports a CA file it cannot read", async () => {
    const hosts = new RegistryHosts({ "reg.example": host({ caFiles: ["/nonexistent/ca.pem"] }) }, { connectTimeoutMs: 1000 });
    await rejectsWith(hosts.endpoint({ url: "https://reg.example", mirror: false, registry: "reg.example" }), "FailedPrecondition", /read CA file \/nonexistent\/ca\.pem/);
    await hosts.close();
  });
});

describe("registry client: mirrors", () => {
  const servers: FakeRegistry[] = [];
  let client: RegistryClient | undefined;
  const serve = async () => {
    const r = await new FakeRegistry().start();
    servers.push(r);
    return r;
  };
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await Promise.all(servers.splice(0).map((s) => s.stop()));
  });

  it("skips a mirror that is down and pulls from the next; blobs come from the endpoint that served the manifest", async () => {
    const upstream = await serve();
    const mirror = await serve();
    const image = mirror.addImage("library/busybox", "latest");
    const down = `http://127.0.0.1:${await closedPort()}`;
    const lines: string[] = [];
    client = new RegistryClient({
      hosts: { [upstream.host]: host({ mirrors: [down, mirror.url] }) },
      logger: createLogger({ level: "debug", sink: { write: (l) => lines.push(l) } }),
    });
    const ref = parseReference(`${upstream.host}/library/busybox`);
    const fetched = await client.getManifest(ref);
    assert.equal(fetched.endpoint, mirror.url);
    assert.equal(fetched.digest, image.digest);
    assert.equal(mirror.requests[0]?.path, "/v2/library/busybox/manifests/latest");
    assert.equal(upstream.requests.length, 0);
    assert.ok(lines.some((l) => l.includes("registry endpoint failed, trying the next") && l.includes(down)), "the skipped mirror is logged at debug");

    upstream.addImage("library/busybox", "latest");
    upstream.blobs.set(image.layer, image.layerBytes);
    const blob = await client.openBlob(ref, { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length });
    assert.deepEqual(await buffer(blob.body), image.layerBytes);
    assert.equal(mirror.requestsTo(/\/blobs\//).length, 1);
    assert.equal(upstream.requests.length, 0, "the serving mirror is asked first");
  });

  it("falls back to the registry when every mirror fails, whatever the failure", async () => {
    const upstream = await serve();
    const empty = await serve();
    const broken = await serve();
    broken.intercept = (_req, res) => {
      json(res, 503, {});
      return true;
    };
    const image = upstream.addImage("app", "v1");
    client = new RegistryClient({ hosts: { [upstream.host]: host({ mirrors: [empty.url, broken.url] }) }, logger: silentLogger });
    const ref = parseReference(`${upstream.host}/app:v1`);
    const fetched = await client.getManifest(ref);
    assert.equal(fetched.endpoint, upstream.url);
    assert.equal(fetched.digest, image.digest);
    assert.equal(empty.requests.length, 1);
    assert.equal(broken.requests.length, 1);
    await client.getManifestByDigest(ref, image.digest);
    assert.equal(empty.requests.length + broken.requests.length, 2, "an index's entry is asked where the index came from");

    // A blob: the registry (which served the manifest) first, then the mirrors.
    const blob = await client.openBlob(ref, { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length });
    assert.deepEqual(await buffer(blob.body), image.layerBytes);
    assert.equal(empty.requests.length + broken.requests.length, 2, "the blob came from the registry first");
  });

  it("throws the registry's own error, naming the mirrors' failures, when all fail", async () => {
    const upstream = await serve();
    const empty = await serve();
    const down = `http://127.0.0.1:${await closedPort()}`;
    client = new RegistryClient({ hosts: { [upstream.host]: host({ mirrors: [down, empty.url] }) }, logger: silentLogger });
    const err = await rejectsWith(client.getManifest(parseReference(`${upstream.host}/nope:v1`)), "NotFound", /manifest .*nope:v1 from http:\/\/127\.0\.0\.1:\d+: HTTP 404 not found/);
    assert.ok(err.message.startsWith(`manifest ${upstream.host}/nope:v1 from ${upstream.url}: HTTP 404`), err.message);
    assert.match(err.message, new RegExp(`mirrors failed too: ${down}: .*ECONNREFUSED.*; ${empty.url}: .*HTTP 404`));
  });

  it("never sends the pull's credentials to a mirror", async () => {
    const upstream = await serve();
    const mirror = await serve();
    mirror.addImage("app", "v1");
    client = new RegistryClient({ hosts: { [upstream.host]: host({ mirrors: [mirror.url] }) }, logger: silentLogger });
    await client.getManifest(parseReference(`${upstream.host}/app:v1`), { credentials: { registryToken: "secret-token" } });
    assert.equal(mirror.requests[0]?.headers.authorization, undefined);
  });

  it("does not try the next endpoint after the caller's abort", async () => {
    const upstream = await serve();
    const mirror = await serve();
    mirror.intercept = () => true; // hangs
    upstream.addImage("app", "v1");
    client = new RegistryClient({ hosts: { [upstream.host]: host({ mirrors: [mirror.url] }) }, logger: silentLogger });
    await rejectsWith(client.getManifest(parseReference(`${upstream.host}/app:v1`), { signal: AbortSignal.timeout(100) }), "DeadlineExceeded", /deadline passed/);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    await rejectsWith(client.getManifest(parseReference(`${upstream.host}/app:v1`), { signal: controller.signal }), "Canceled", /canceled/);
    assert.equal(upstream.requests.length, 0);
  });
});

describe("registry client: TLS", () => {
  let certs: TestCertificates;
  let registry: FakeRegistry;
  let client: RegistryClient | undefined;
  before(async () => {
    certs = await makeTestCertificates();
  });
  after(async () => {
    await certs?.remove();
  });
  beforeEach(async () => {
    registry = await new FakeRegistry({ tls: { cert: certs.cert, key: certs.key } }).start();
    registry.addImage("app", "v1");
  });
  afterEach(async () => {
    await client?.close();
    client = undefined;
    await registry.stop();
  });

  it("trusts a registry's CA file, besides the system's", async () => {
    client = new RegistryClient({ hosts: { [registry.host]: host({ plainHttp: false, caFiles: [certs.caFile] }) }, logger: silentLogger });
    const fetched = await client.getManifest(parseReference(`${registry.host}/app:v1`));
    assert.equal(fetched.endpoint, `https://${registry.host}`);
  });

  it("refuses an unknown CA with Unavailable and a hint, and trusts nothing more with insecure_skip_verify unset", async () => {
    client = new RegistryClient({ hosts: { [registry.host]: host({ plainHttp: false }) }, logger: silentLogger });
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/app:v1`)), "Unavailable", new RegExp(`TLS: .*add its CA with ca_files in \\[registries\\."${registry.host.replace(/\./g, "\\.")}"\\], or set insecure_skip_verify`));
  });

  it("skips verification with insecure_skip_verify", async () => {
    client = new RegistryClient({ hosts: { [registry.host]: host({ plainHttp: false, insecureSkipVerify: true }) }, logger: silentLogger });
    const fetched = await client.getManifest(parseReference(`${registry.host}/app:v1`));
    assert.equal(fetched.endpoint, `https://${registry.host}`);
  });

  it("uses a mirror's own TLS settings", async () => {
    const upstream = await new FakeRegistry().start();
    try {
      client = new RegistryClient({
        hosts: { [upstream.host]: host({ mirrors: [`https://localhost:${registry.host.split(":")[1]}`] }), [`localhost:${registry.host.split(":")[1]}`]: host({ caFiles: [certs.caFile] }) },
        logger: silentLogger,
      });
      const fetched = await client.getManifest(parseReference(`${upstream.host}/app:v1`));
      assert.equal(fetched.endpoint, `https://localhost:${registry.host.split(":")[1]}`);
      assert.equal(upstream.requests.length, 0);
    } finally {
      await upstream.stop();
    }
  });
});
