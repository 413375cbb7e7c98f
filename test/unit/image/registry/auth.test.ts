import assert from "node:assert/strict";
import { buffer } from "node:stream/consumers";
import { silentLogger } from "../../../../src/common/log.js";
import { MediaType } from "../../../../src/image/manifest.js";
import { parseReference } from "../../../../src/image/reference.js";
import { parseWwwAuthenticate } from "../../../../src/image/registry/challenge.js";
import { RegistryClient } from "../../../../src/image/registry/client.js";
import { rejectsWith } from "./expect.js";
import { FakeRegistry, type AuthMode } from "./fake-registry.js";

describe("WWW-Authenticate challenges", () => {
  it("reads a bearer challenge with quoted, escaped and bare parameters", () => {
    assert.deepEqual(parseWwwAuthenticate('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), [
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" } },
    ]);
    assert.deepEqual(parseWwwAuthenticate('Bearer  Realm = "a\\"b\\\\c" , error=insufficient_scope,scope="x,y"'), [
      { scheme: "bearer", params: { realm: 'a"b\\c', error: "insufficient_scope", scope: "x,y" } },
    ]);
  });

  it("reads several challenges, in one header or several", () => {
    assert.deepEqual(parseWwwAuthenticate('Basic realm="Registry Realm", Bearer realm="https://t.example/token",service=reg'), [
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: "https://t.example/token", service: "reg" } },
    ]);
    assert.deepEqual(parseWwwAuthenticate(["Negotiate", 'basic realm="r"']), [
      { scheme: "negotiate", params: {} },
      { scheme: "basic", params: { realm: "r" } },
    ]);
    assert.deepEqual(parseWwwAuthenticate(""), []);
    assert.deepEqual(parseWwwAuthenticate('"garbage'), [{ scheme: "garbage", params: {} }], "unreadable characters are skipped, never looped on");
  });
});

describe("registry client: authentication", () => {
  let registry: FakeRegistry;
  let client: RegistryClient;
  let clock: number;
  const start = async (auth: AuthMode) => {
    registry = await new FakeRegistry({ auth }).start();
    clock = 1_000_000;
    client = new RegistryClient({ hosts: {}, logger: silentLogger, now: () => clock });
    return registry;
  };
  afterEach(async () => {
    await client?.close();
    await registry?.stop();
  });

  it("gets an anonymous bearer token once, reuses it for manifests and blobs, and gets another when it expires", async () => {
    await start({ kind: "bearer", anonymous: true, expiresIn: 300 });
    const image = registry.addImage("library/busybox", "latest");
    const ref = parseReference(`${registry.host}/library/busybox`);
    await client.getManifest(ref);
    const blob = await client.openBlob(ref, { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length });
    assert.deepEqual(await buffer(blob.body), image.layerBytes);
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 1, "one token for the three requests");
    const tokenUrl = new URL(registry.tokenRequests[0]?.path ?? "", "http://x");
    assert.equal(tokenUrl.searchParams.get("service"), 'fake "registry"');
    assert.equal(tokenUrl.searchParams.get("scope"), "repository:library/busybox:pull");
    assert.equal(tokenUrl.searchParams.get("account"), null);
    assert.equal(registry.requests.length, 4, "one 401, then three authenticated requests sent with the token up front");

    clock += 280_000;
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 1, "still valid 20 s before its end");
    clock += 12_000; // 292 s: within the 10 s margin before the token's 300 s end
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 2, "an expiring token is replaced before use");
    assert.equal(registry.requests.length, 6, "the new token is sent up front");
  });

  it("uses the default 60 s life when the token service gives none, and asks again when the registry refuses a cached token", async () => {
    await start({ kind: "bearer", anonymous: true });
    registry.addImage("app", "v1");
    const ref = parseReference(`${registry.host}/app:v1`);
    await client.getManifest(ref);
    clock += 50_000;
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 1);
    clock += 5_000;
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 2, "60 s less the margin");
    registry.expireTokens();
    await client.getManifest(ref);
    assert.equal(registry.tokenRequests.length, 3, "a refused token is replaced");
  });

  it("keeps tokens apart per repository and per credentials", async () => {
    await start({ kind: "bearer", anonymous: true, users: { bob: "pw" } });
    registry.addImage("a", "1");
    registry.addImage("b", "1");
    await client.getManifest(parseReference(`${registry.host}/a:1`));
    await client.getManifest(parseReference(`${registry.host}/b:1`));
    await client.getManifest(parseReference(`${registry.host}/a:1`), { credentials: { username: "bob", password: "pw" } });
    await client.getManifest(parseReference(`${registry.host}/a:1`));
    assert.equal(registry.tokenRequests.length, 3);
  });

  it("shares one token request among parallel requests", async () => {
    await start({ kind: "bearer", anonymous: true });
    const image = registry.addImage("app", "v1");
    const ref = parseReference(`${registry.host}/app:v1`);
    await client.getManifest(ref);
    clock += 3_600_000;
    const downloads = await Promise.all([1, 2, 3].map(() => client.openBlob(ref, { mediaType: MediaType.ociLayerGzip, digest: image.layer, size: image.layerBytes.length })));
    for (const d of downloads) assert.deepEqual(await buffer(d.body), image.layerBytes);
    assert.equal(registry.tokenRequests.length, 2);
  });

  it("sends Basic credentials to the token service, with the account", async () => {
    await start({ kind: "bearer", users: { alice: "pa:ss" } });
    registry.addImage("private/app", "v1");
    await client.getManifest(parseReference(`${registry.host}/private/app:v1`), { credentials: { username: "alice", password: "pa:ss" } });
    const t = registry.tokenRequests[0];
    assert.equal(t?.headers.authorization, `Basic ${Buffer.from("alice:pa:ss").toString("base64")}`);
    assert.equal(new URL(t?.path ?? "", "http://x").searchParams.get("account"), "alice");
    await client.getManifest(parseReference(`${registry.host}/private/app:v1`), { credentials: { auth: Buffer.from("alice:pa:ss").toString("base64") } });
    assert.equal(registry.tokenRequests.length, 2, "the auth form is another credential identity, with its own token");
  });

  it("refuses wrong or missing credentials with FailedPrecondition, naming the registry and repository, never the password", async () => {
    await start({ kind: "bearer", users: { alice: "right" } });
    registry.addImage("private/app", "v1");
    const ref = parseReference(`${registry.host}/private/app:v1`);
    const wrong = await rejectsWith(
      client.getManifest(ref, { credentials: { username: "alice", password: "hunter2-wrong" } }),
      "FailedPrecondition",
      new RegExp(`authentication failed for registry 127\\.0\\.0\\.1:\\d+, repository private/app: the token service http://127\\.0\\.0\\.1:\\d+ refused the credentials \\(HTTP 401\\)`),
    );
    assert.ok(!wrong.message.includes("hunter2"));
    await rejectsWith(client.getManifest(ref), "FailedPrecondition", /refused an anonymous pull/);
    await rejectsWith(client.getManifest(ref, { credentials: { auth: "bm90IGEgcGFpcg==" } }), "InvalidArgument", /auth credential is not base64 of user:password/);
  });

  it("fails when a fresh token is refused", async () => {
    await start({ kind: "bearer", anonymous: true });
    registry.addImage("app", "v1");
    registry.intercept = (req, res) => {
      if (!req.headers.authorization) return false;
      res.writeHead(401, { "www-authenticate": `Bearer realm="${registry.url}/token",service=x`, "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "insufficient scope" }] }));
      return true;
    };
    await rejectsWith(
      client.getManifest(parseReference(`${registry.host}/app:v1`)),
      "FailedPrecondition",
      /authentication failed for registry .*, repository app: the repository does not exist or needs credentials \(HTTP 401, UNAUTHORIZED: insufficient scope\)/,
    );
    assert.equal(registry.tokenRequests.length, 1);
  });

  it("exchanges an identity token for an access token with the OAuth2 POST", async () => {
    await start({ kind: "bearer", identityTokens: { "refresh-123": "carol" } });
    registry.addImage("private/app", "v1");
    await client.getManifest(parseReference(`${registry.host}/private/app:v1`), { credentials: { identityToken: "refresh-123" } });
    const t = registry.tokenRequests[0];
    assert.equal(t?.method, "POST");
    assert.equal(t?.headers["content-type"], "application/x-www-form-urlencoded");
    const form = new URLSearchParams(t?.body);
    assert.deepEqual(Object.fromEntries(form), {
      grant_type: "refresh_token",
      refresh_token: "refresh-123",
      client_id: "vmpod",
      service: 'fake "registry"',
      scope: "repository:private/app:pull",
    });
    await rejectsWith(
      client.getManifest(parseReference(`${registry.host}/private/app:v1`), { credentials: { identityToken: "stale" } }),
      "FailedPrecondition",
      /refused the credentials/,
    );
  });

  it("falls back to the token GET when the token service has no OAuth2 endpoint", async () => {
    await start({ kind: "bearer", noOAuth: true, users: { dave: "pw" }, identityTokens: { t: "dave" } });
    registry.addImage("app", "v1");
    await client.getManifest(parseReference(`${registry.host}/app:v1`), { credentials: { identityToken: "t", username: "dave", password: "pw" } });
    assert.deepEqual(
      registry.tokenRequests.map((r) => r.method),
      ["POST", "GET"],
    );
    assert.ok(registry.tokenRequests[1]?.headers.authorization?.startsWith("Basic "));
  });

  it("sends a registry token as the bearer as it is, without a token request", async () => {
    await start({ kind: "bearer", staticTokens: ["registry-token-1"] });
    registry.addImage("app", "v1");
    await client.getManifest(parseReference(`${registry.host}/app:v1`), { credentials: { registryToken: "registry-token-1" } });
    assert.equal(registry.tokenRequests.length, 0);
    assert.equal(registry.requests.length, 1);
    assert.equal(registry.requests[0]?.headers.authorization, "Bearer registry-token-1");
    await rejectsWith(client.getManifest(parseReference(`${registry.host}/app:v1`), { credentials: { registryToken: "other" } }), "FailedPrecondition", /refused the registry token/);
  });

  it("answers a Basic challenge with username/password or auth, then sends it up front", async () => {
    await start({ kind: "basic", users: { erin: "pw" } });
    registry.addImage("app", "v1");
    const ref = parseReference(`${registry.host}/app:v1`);
    await client.getManifest(ref, { credentials: { username: "erin", password: "pw" } });
    await client.getManifest(ref, { credentials: { username: "erin", password: "pw" } });
    assert.deepEqual(
      registry.requests.map((r) => r.headers.authorization),
      [undefined, `Basic ${Buffer.from("erin:pw").toString("base64")}`, `Basic ${Buffer.from("erin:pw").toString("base64")}`],
    );
    await client.getManifest(ref, { credentials: { auth: Buffer.from("erin:pw").toString("base64") } });
    const wrong = await rejectsWith(client.getManifest(ref, { credentials: { username: "erin", password: "nope-secret" } }), "FailedPrecondition", /registry refused the credentials/);
    assert.ok(!wrong.message.includes("nope-secret"));
    await rejectsWith(client.getManifest(ref), "FailedPrecondition", /requires credentials and none were given/);
  });
});
