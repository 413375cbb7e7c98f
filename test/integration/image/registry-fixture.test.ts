/**
 * The test registry fixture proves itself: Debian's docker-registry starts
 * and stops leaving nothing behind; every test image pushes and reads back
 * byte for byte over plain HTTP; Basic and token authentication refuse what
 * they should and accept what they should; the front proxy breaks exactly
 * what it is told to; and skopeo, a real client, reads every image.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, readlink, rm, stat, lstat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { gunzip as gunzipCallback } from "node:zlib";
import { run } from "../../../src/common/exec.js";
import { exists } from "../../../src/common/fs.js";
import { digestOf } from "../../../src/image/digest.js";
import { processesMentioning } from "../../helpers/leaks.js";
import {
  pushBusybox, pushDockerSchema2, pushHostile, pushIndex, pushLarge, pushMultiLayer, pushZstd,
  type PushedImage, type PushedIndex,
} from "../../helpers/registry/images.js";
import type { LayerBlob } from "../../helpers/registry/layer.js";
import { MEDIA_TYPES } from "../../helpers/registry/oci.js";
import { basicAuth } from "../../helpers/registry/push.js";
import { startRegistry, type RunningRegistry } from "../../helpers/registry/server.js";

const gunzip = promisify(gunzipCallback);
const ACCEPT = [MEDIA_TYPES.oci.manifest, MEDIA_TYPES.oci.index, MEDIA_TYPES.docker.manifest, MEDIA_TYPES.docker.index].join(", ");
const CREDS = { username: "tester", password: "s3cret pass" };

interface Fetched {
  readonly status: number;
  readonly headers: Headers;
  readonly bytes: Buffer;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Fetched> {
  const res = await fetch(url, { headers });
  return { status: res.status, headers: res.headers, bytes: Buffer.from(await res.arrayBuffer()) };
}

async function getManifest(base: string, repository: string, reference: string, headers: Record<string, string> = {}): Promise<Fetched> {
  return get(`${base}/v2/${repository}/manifests/${reference}`, { accept: ACCEPT, ...headers });
}

async function skopeoInspect(reference: string, extra: string[] = []): Promise<{ Digest: string; Layers: string[]; Architecture: string; Labels: Record<string, string> | null }> {
  const { stdout } = await run("skopeo", ["inspect", "--tls-verify=false", ...extra, `docker://${reference}`], { whenMissing: "install the Debian package skopeo" });
  return JSON.parse(stdout) as { Digest: string; Layers: string[]; Architecture: string; Labels: Record<string, string> | null };
}

/** Runs `cmd` with binary `input` on its stdin; resolves with its stdout. */
function pipe(cmd: string, args: readonly string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(Buffer.concat(out)) : reject(new Error(`${cmd} ${args.join(" ")}: exit ${code}: ${Buffer.concat(err).toString()}`))));
    child.stdin.end(input);
  });
}

async function diffIdOf(layer: LayerBlob, bytes: Buffer): Promise<string> {
  if (layer.compression === "gzip") return digestOf(await gunzip(bytes));
  if (layer.compression === "none") return digestOf(bytes);
  return digestOf(await pipe("zstd", ["-dc"], bytes));
}

/** Asserts that `registry` is stopped: no process, no directory. */
async function assertGone(registry: RunningRegistry): Promise<void> {
  assert.equal(await exists(registry.dir), false, `${registry.dir} still exists`);
  assert.deepEqual(await processesMentioning(registry.dir), []);
  assert.throws(() => process.kill(registry.pid, 0), /ESRCH/);
}

describe("test registry fixture (docker-registry, skopeo)", function () {
  this.timeout(120_000);

  describe("lifecycle", () => {
    it("starts on a loopback port, answers /v2/, and stops leaving no process and no directory", async () => {
      const registry = await startRegistry({ auth: { token: CREDS }, proxy: true });
      try {
        assert.match(registry.host, /^127\.0\.0\.1:\d+$/);
        assert.equal((await get(`${registry.url}/v2/`)).status, 401);
        assert.equal(await exists(join(registry.dir, "config.yml")), true);
        assert.equal((await processesMentioning(registry.dir)).length, 1);
      } finally {
        await registry.stop();
      }
      await registry.stop(); // idempotent
      await assertGone(registry);
      await assert.rejects(fetch(`${registry.url}/v2/`));
      await assert.rejects(fetch(registry.tokenServer?.realm ?? "none"));
      await assert.rejects(fetch(`${registry.proxy?.url ?? "none"}/v2/`));
    });
  });

  describe("without authentication", () => {
    let registry: RunningRegistry;
    let images: Record<string, PushedImage>;
    let indexes: Record<string, PushedIndex>;

    before(async () => {
      registry = await startRegistry({ proxy: true });
      images = {
        busybox: await pushBusybox(registry),
        layered: await pushMultiLayer(registry),
        zstd: await pushZstd(registry),
        docker: await pushDockerSchema2(registry),
        large: await pushLarge(registry),
        "hostile-dot-dot": await pushHostile(registry, "dot-dot"),
        "hostile-symlink-escape": await pushHostile(registry, "symlink-escape"),
        "hostile-hardlink-escape": await pushHostile(registry, "hardlink-escape"),
      };
      indexes = { oci: await pushIndex(registry), docker: await pushIndex(registry, { format: "docker" }) };
    });

    after(async () => {
      await registry?.stop();
      if (registry) await assertGone(registry);
    });

    it("serves every pushed image's manifest, config and layers with the digests the fixture computed", async () => {
      for (const [name, image] of Object.entries(images)) {
        const manifest = await getManifest(registry.url, image.repository, image.tag);
        assert.equal(manifest.status, 200, name);
        assert.equal(manifest.headers.get("docker-content-digest"), image.manifestDigest, name);
        assert.equal(manifest.headers.get("content-type"), image.manifestMediaType, name);
        assert.equal(digestOf(manifest.bytes), image.manifestDigest, name);
        const parsed = JSON.parse(manifest.bytes.toString()) as { config: { digest: string }; layers: { digest: string }[] };
        assert.equal(parsed.config.digest, image.configDigest, name);
        assert.deepEqual(parsed.layers.map((l) => l.digest), image.layers.map((l) => l.digest), name);

        const config = await get(`${registry.url}/v2/${image.repository}/blobs/${image.configDigest}`);
        assert.equal(digestOf(config.bytes), image.configDigest, name);
        assert.deepEqual((JSON.parse(config.bytes.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids, image.diffIds, name);
        for (const layer of image.layers) {
          const blob = await get(`${registry.url}/v2/${image.repository}/blobs/${layer.digest}`);
          assert.equal(digestOf(blob.bytes), layer.digest, `${name} ${layer.digest}`);
          assert.equal(await diffIdOf(layer, blob.bytes), layer.diffId, `${name} ${layer.digest}`);
        }
      }
      assert.equal(images.zstd?.layers[0]?.mediaType, "application/vnd.oci.image.layer.v1.tar+zstd");
      assert.equal(images.docker?.manifestMediaType, MEDIA_TYPES.docker.manifest);
      assert.ok((images.large?.size ?? 0) > 45_000_000, `large image is ${images.large?.size} bytes`);
      assert.equal(images.large?.layers.length, 5);
    });

    it("serves both indexes, whose entries are fetchable by digest and name the right platforms", async () => {
      for (const [format, index] of Object.entries(indexes)) {
        const fetched = await getManifest(registry.url, index.repository, index.tag);
        assert.equal(fetched.headers.get("docker-content-digest"), index.indexDigest, format);
        assert.equal(fetched.headers.get("content-type"), format === "oci" ? MEDIA_TYPES.oci.index : MEDIA_TYPES.docker.index);
        const parsed = JSON.parse(fetched.bytes.toString()) as { manifests: { digest: string; mediaType: string; platform: { architecture: string; variant?: string } }[] };
        assert.deepEqual(parsed.manifests.map((m) => [m.platform.architecture, m.platform.variant]), [["amd64", undefined], ["arm64", "v8"]]);
        for (const [i, entry] of index.entries.entries()) {
          assert.equal(parsed.manifests[i]?.digest, entry.image.manifestDigest);
          const child = await getManifest(registry.url, index.repository, entry.image.manifestDigest);
          assert.equal(digestOf(child.bytes), entry.image.manifestDigest);
          assert.equal(child.headers.get("content-type"), format === "oci" ? MEDIA_TYPES.oci.manifest : MEDIA_TYPES.docker.manifest);
        }
      }
      assert.equal(indexes.oci?.entries[0]?.image.manifestDigest, images.busybox?.manifestDigest, "the OCI index's amd64 entry is the busybox image");
    });

    it("describes the files the busybox layer really holds, and the layered image's whiteouts", async () => {
      const scratch = await mkdtemp(join(tmpdir(), "vmpod-fixture-test-"));
      try {
        const busybox = images.busybox as PushedImage;
        const tar = await gunzip((busybox.layers[0] as LayerBlob).bytes);
        await pipe("tar", ["-x", "-C", scratch, "-f", "-"], tar);
        for (const [path, want] of busybox.files) {
          const at = join(scratch, path);
          const st = await lstat(at);
          assert.equal(st.isSymbolicLink() ? "symlink" : st.isDirectory() ? "dir" : "file", want.type, path);
          if (want.mode !== undefined && path !== "/") assert.equal(st.mode & 0o7777, want.mode, path);
          if (want.type === "symlink") assert.equal(await readlink(at), want.target, path);
          if (want.type === "file") assert.equal(createHash("sha256").update(await readFile(at)).digest("hex"), want.sha256, path);
        }
        assert.equal((await stat(join(scratch, "tmp"))).mode & 0o7777, 0o1777);
        assert.equal((await stat(join(scratch, "bin/sh"))).size, (await stat("/bin/busybox")).size);

        const layered = images.layered as PushedImage;
        assert.deepEqual(layered.absent, ["/data/a", "/data/dir/x"]);
        for (const path of layered.absent) assert.equal(layered.files.has(path), false, path);
        assert.equal(layered.files.get("/data/dir/y")?.content, "y from layer 3\n");
        assert.equal(layered.files.get("/data/b")?.content, "b from layer 2\n");
        assert.equal(layered.files.get("/etc/motd")?.type, "file");
        const top = await gunzip((layered.layers[2] as LayerBlob).bytes);
        const names = (await pipe("tar", ["-t", "-f", "-"], top)).toString();
        assert.deepEqual(names.trim().split("\n"), ["data/", "data/.wh.a", "data/dir/", "data/dir/.wh..wh..opq", "data/dir/y"]);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    });

    it("holds the hostile entries byte for byte in the hostile layers", async () => {
      const listing = async (image: PushedImage | undefined): Promise<string> => {
        const tar = await gunzip((image?.layers[0] as LayerBlob).bytes);
        return (await pipe("tar", ["-tv", "-f", "-"], tar)).toString();
      };
      assert.match(await listing(images["hostile-dot-dot"]), /\.\.\/evil/);
      assert.match(await listing(images["hostile-symlink-escape"]), /escape -> \/tmp\n.*escape\/evil/);
      assert.match(await listing(images["hostile-hardlink-escape"]), /^h.* passwd link to/m);
    });

    it("is read by skopeo, a real client, image by image", async () => {
      for (const [name, image] of Object.entries(images)) {
        const inspected = await skopeoInspect(image.reference);
        assert.equal(inspected.Digest, image.manifestDigest, name);
        assert.deepEqual(inspected.Layers, image.layers.map((l) => l.digest), name);
      }
      for (const [format, index] of Object.entries(indexes)) {
        const amd64 = await skopeoInspect(index.reference);
        assert.equal(amd64.Digest, index.indexDigest, format);
        assert.deepEqual(amd64.Layers, index.entries[0]?.image.layers.map((l) => l.digest), format);
        const arm64 = await skopeoInspect(index.reference, ["--override-arch", "arm64", "--override-variant", "v8"]);
        assert.equal(arm64.Architecture, "arm64", format);
        assert.deepEqual(arm64.Labels, { "io.vmpod.test": "arm64-marker" }, format);
      }
    });

    it("proxy: corrupts exactly the chosen blob, one byte, same length", async () => {
      const proxy = registry.proxy;
      assert.ok(proxy);
      proxy.reset();
      const image = images.layered as PushedImage;
      const [bad, good] = [image.layers[1] as LayerBlob, image.layers[2] as LayerBlob];
      proxy.corruptBlob(bad.digest);
      const corrupted = await get(`${proxy.url}/v2/${image.repository}/blobs/${bad.digest}`);
      assert.equal(corrupted.bytes.length, bad.size);
      assert.notEqual(digestOf(corrupted.bytes), bad.digest);
      const differing = [...corrupted.bytes].flatMap((b, i) => (b === bad.bytes[i] ? [] : [i]));
      assert.deepEqual(differing, [Math.floor(bad.size / 2)]);
      assert.equal(digestOf((await get(`${proxy.url}/v2/${image.repository}/blobs/${good.digest}`)).bytes), good.digest);
      assert.equal(digestOf((await get(`${registry.url}/v2/${image.repository}/blobs/${bad.digest}`)).bytes), bad.digest);
      assert.equal(proxy.count(`/v2/${image.repository}/blobs/${bad.digest}`), 1);
      assert.equal(proxy.counts().get(`/v2/${image.repository}/blobs/${good.digest}`), 1);
      assert.deepEqual(proxy.requests.map((r) => r.fault), ["corrupted", undefined]);
    });

    it("proxy: fails the next N requests with 500, then forwards again", async () => {
      const proxy = registry.proxy;
      assert.ok(proxy);
      proxy.reset();
      const image = images.busybox as PushedImage;
      proxy.failNext(2, /\/manifests\//);
      assert.equal((await get(`${proxy.url}/v2/`)).status, 200, "a request the filter does not match passes");
      assert.equal((await getManifest(proxy.url, image.repository, image.tag)).status, 500);
      assert.equal((await getManifest(proxy.url, image.repository, image.tag)).status, 500);
      const third = await getManifest(proxy.url, image.repository, image.tag);
      assert.equal(third.status, 200);
      assert.equal(digestOf(third.bytes), image.manifestDigest);
      assert.equal(proxy.count(/\/manifests\//, "GET"), 3);
    });

    it("proxy: cuts a blob after K bytes once; a ranged request resumes it", async () => {
      const proxy = registry.proxy;
      assert.ok(proxy);
      proxy.reset();
      const image = images.large as PushedImage;
      const layer = image.layers[1] as LayerBlob;
      const cutAt = 1_000_000;
      proxy.cutBlob(layer.digest, cutAt);
      const res = await fetch(`${proxy.url}/v2/${image.repository}/blobs/${layer.digest}`);
      assert.equal(res.headers.get("content-length"), String(layer.size));
      const received: Buffer[] = [];
      await assert.rejects(async () => {
        for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) received.push(Buffer.from(chunk));
      });
      const head = Buffer.concat(received);
      assert.equal(head.length, cutAt);
      const rest = await get(`${proxy.url}/v2/${image.repository}/blobs/${layer.digest}`, { range: `bytes=${cutAt}-` });
      assert.equal(rest.status, 206);
      assert.equal(digestOf(Buffer.concat([head, rest.bytes])), layer.digest);
      assert.deepEqual(proxy.requests.map((r) => [r.fault, r.range]), [["cut", undefined], [undefined, `bytes=${cutAt}-`]]);
    });
  });

  describe("Basic authentication (htpasswd)", () => {
    let registry: RunningRegistry;
    before(async () => {
      registry = await startRegistry({ auth: { basic: CREDS } });
    });
    after(async () => {
      await registry?.stop();
      if (registry) await assertGone(registry);
    });

    it("refuses missing and wrong credentials with 401, accepts the right ones, and skopeo reads with --creds", async () => {
      const image = await pushBusybox(registry);
      const none = await getManifest(registry.url, image.repository, image.tag);
      assert.equal(none.status, 401);
      assert.match(none.headers.get("www-authenticate") ?? "", /^Basic realm=/);
      const wrong = await getManifest(registry.url, image.repository, image.tag, { authorization: basicAuth({ ...CREDS, password: "wrong" }) });
      assert.equal(wrong.status, 401);
      const right = await getManifest(registry.url, image.repository, image.tag, { authorization: basicAuth(CREDS) });
      assert.equal(right.status, 200);
      assert.equal(digestOf(right.bytes), image.manifestDigest);
      assert.equal((await skopeoInspect(image.reference, ["--creds", `${CREDS.username}:${CREDS.password}`])).Digest, image.manifestDigest);
      await assert.rejects(skopeoInspect(image.reference, ["--creds", `${CREDS.username}:wrong`]), /unauthorized|authentication required/i);
    });
  });

  describe("token authentication", () => {
    let registry: RunningRegistry;
    before(async () => {
      registry = await startRegistry({ auth: { token: { ...CREDS, identityToken: "refresh-me" } } });
    });
    after(async () => {
      await registry?.stop();
      if (registry) await assertGone(registry);
    });

    const token = async (scope: string, creds = CREDS): Promise<{ status: number; token?: string }> => {
      const server = registry.tokenServer;
      assert.ok(server);
      const res = await get(`${server.realm}?service=${server.service}&scope=${encodeURIComponent(scope)}`, { authorization: basicAuth(creds) });
      return { status: res.status, ...(res.status === 200 ? { token: (JSON.parse(res.bytes.toString()) as { token: string }).token } : {}) };
    };

    it("challenges with Bearer, issues scoped RS256 tokens the registry accepts, and counts every one", async () => {
      const server = registry.tokenServer;
      assert.ok(server);
      const image = await pushBusybox(registry);
      const challenge = await getManifest(registry.url, image.repository, image.tag);
      assert.equal(challenge.status, 401);
      assert.equal(challenge.headers.get("www-authenticate"), `Bearer realm="${server.realm}",service="${server.service}",scope="repository:${image.repository}:pull"`);

      assert.equal((await token(`repository:${image.repository}:pull`, { ...CREDS, password: "wrong" })).status, 401);
      const before = server.issued();
      const first = await token(`repository:${image.repository}:pull`);
      const second = await token(`repository:${image.repository}:pull`);
      assert.equal(server.issued(), before + 2, "the token server caches nothing: each request is a new token");
      assert.ok(first.token && second.token && first.token !== second.token);
      const header = JSON.parse(Buffer.from(first.token.split(".")[0] as string, "base64url").toString()) as { alg: string; x5c: string[] };
      assert.equal(header.alg, "RS256");
      assert.equal(header.x5c.length, 1);

      // One token serves many requests: the count does not move.
      for (let i = 0; i < 2; i++) {
        const ok = await getManifest(registry.url, image.repository, image.tag, { authorization: `Bearer ${first.token}` });
        assert.equal(ok.status, 200);
        assert.equal(digestOf(ok.bytes), image.manifestDigest);
      }
      assert.equal(server.issued(), before + 2);

      const other = await token("repository:someone/else:pull");
      const denied = await getManifest(registry.url, image.repository, image.tag, { authorization: `Bearer ${other.token}` });
      assert.equal(denied.status, 401, "a token for another repository opens nothing here");
      assert.match(denied.headers.get("www-authenticate") ?? "", /insufficient_scope/);
    });

    it("exchanges an identity token (OAuth2 refresh token) by POST, and refuses a wrong one", async () => {
      const server = registry.tokenServer;
      assert.ok(server);
      const post = (refresh: string) =>
        fetch(server.realm, {
          method: "POST",
          headers: { "content-type": "application/x-www-form-urlencoded" },
          body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refresh, service: server.service, scope: "repository:vmpod-test/busybox:pull", client_id: "vmpod" }),
        });
      const ok = await post("refresh-me");
      assert.equal(ok.status, 200);
      const { access_token } = (await ok.json()) as { access_token: string };
      assert.equal((await getManifest(registry.url, "vmpod-test/busybox", "latest", { authorization: `Bearer ${access_token}` })).status, 200);
      assert.equal((await post("not-it")).status, 401);
    });

    it("with `anonymous`, hands credential-less clients a token that opens nothing; `expiresIn` sets the lifetime", async () => {
      const open = await startRegistry({ auth: { token: { ...CREDS, anonymous: true, expiresIn: 30 } } });
      try {
        const server = open.tokenServer;
        assert.ok(server);
        const image = await pushBusybox(open);
        const res = await get(`${server.realm}?service=${server.service}&scope=repository:${image.repository}:pull`);
        assert.equal(res.status, 200);
        const body = JSON.parse(res.bytes.toString()) as { token: string; expires_in: number };
        assert.equal(body.expires_in, 30);
        const claims = JSON.parse(Buffer.from(body.token.split(".")[1] as string, "base64url").toString()) as { exp: number; iat: number; access: unknown[]; sub: string };
        assert.equal(claims.exp - claims.iat, 30);
        assert.deepEqual([claims.sub, claims.access], ["", []]);
        const denied = await getManifest(open.url, image.repository, image.tag, { authorization: `Bearer ${body.token}` });
        assert.equal(denied.status, 401);
        assert.equal(server.requests.at(-1)?.user, "");
      } finally {
        await open.stop();
      }
      await assertGone(open);
    });

    it("is read by skopeo with --creds", async () => {
      const image = await pushZstd(registry);
      assert.equal((await skopeoInspect(image.reference, ["--creds", `${CREDS.username}:${CREDS.password}`])).Digest, image.manifestDigest);
      await assert.rejects(skopeoInspect(image.reference));
    });
  });
});
