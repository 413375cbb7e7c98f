/**
 * A small in-process registry (OCI distribution v2, pull side) on a real
 * loopback socket, HTTP or HTTPS: manifests by tag and digest, blobs with
 * ranges, and optionally Basic auth or a bearer token service with users,
 * identity tokens and expiring tokens. Every request is recorded; a test can
 * take over any request with `intercept`.
 */
import { randomBytes } from "node:crypto";
import http from "node:http";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { digestOf, type Digest } from "../../../../src/image/digest.js";
import { MediaType } from "../../../../src/image/manifest.js";

export interface Recorded {
  readonly method: string;
  readonly path: string;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

export type AuthMode =
  | { readonly kind: "none" }
  | { readonly kind: "basic"; readonly users: Readonly<Record<string, string>> }
  | {
      readonly kind: "bearer";
      readonly users?: Readonly<Record<string, string>>;
      /** Pulls without credentials get a token. */
      readonly anonymous?: boolean;
      /** Refresh (identity) token → user. */
      readonly identityTokens?: Readonly<Record<string, string>>;
      /** Tokens accepted as they are (registry tokens). */
      readonly staticTokens?: readonly string[];
      /** Answer the token POST with 405, as token services without OAuth2 do. */
      readonly noOAuth?: boolean;
      readonly expiresIn?: number;
    };

export interface FakeRegistryOptions {
  readonly auth?: AuthMode;
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Serve ranges (206); otherwise every blob GET gets the whole blob (200). */
  readonly ranges?: boolean;
}

interface StoredManifest {
  readonly bytes: Buffer;
  readonly mediaType: string;
}

export class FakeRegistry {
  readonly requests: Recorded[] = [];
  readonly tokenRequests: Recorded[] = [];
  /** repository → tag or digest → manifest. */
  readonly manifests = new Map<string, Map<string, StoredManifest>>();
  readonly blobs = new Map<string, Buffer>();
  /** Takes over a request when it returns true. */
  intercept: ((req: http.IncomingMessage, res: http.ServerResponse, body: string) => boolean) | undefined;
  /** Tokens issued: token → { user, scope, expired }. */
  readonly issued = new Map<string, { user: string | undefined; scope: string; expired: boolean }>();
  private readonly server: http.Server;
  private readonly auth: AuthMode;
  private port = 0;

  constructor(private readonly options: FakeRegistryOptions = {}) {
    this.auth = options.auth ?? { kind: "none" };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => this.handle(req, res, Buffer.concat(chunks).toString("utf8")));
    };
    this.server = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(handler);
  }

  async start(host = "127.0.0.1"): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, host, resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** "127.0.0.1:PORT" */
  get host(): string {
    return `127.0.0.1:${this.port}`;
  }

  get url(): string {
    return `${this.options.tls ? "https" : "http"}://${this.host}`;
  }

  addManifest(repository: string, tag: string | undefined, document: unknown, mediaType: string = MediaType.ociManifest): { digest: Digest; bytes: Buffer } {
    const bytes = Buffer.from(JSON.stringify(document));
    const digest = digestOf(bytes);
    let repo = this.manifests.get(repository);
    if (repo === undefined) this.manifests.set(repository, (repo = new Map()));
    repo.set(digest, { bytes, mediaType });
    if (tag !== undefined) repo.set(tag, { bytes, mediaType });
    return { digest, bytes };
  }

  addBlob(bytes: Buffer): Digest {
    const digest = digestOf(bytes);
    this.blobs.set(digest, bytes);
    return digest;
  }

  /** A one-layer image under `repository:tag`; returns its manifest digest and its layer. */
  addImage(repository: string, tag: string): { digest: Digest; bytes: Buffer; layer: Digest; layerBytes: Buffer } {
    const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", rootfs: { type: "layers", diff_ids: [] } }));
    const layerBytes = randomBytes(10_000);
    const layer = this.addBlob(layerBytes);
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      config: { mediaType: MediaType.ociConfig, digest: this.addBlob(config), size: config.length },
      layers: [{ mediaType: MediaType.ociLayerGzip, digest: layer, size: layerBytes.length }],
    };
    return { ...this.addManifest(repository, tag, manifest), layer, layerBytes };
  }

  /** Makes every issued token expire (the registry refuses it from now on). */
  expireTokens(): void {
    for (const t of this.issued.values()) t.expired = true;
  }

  requestsTo(pattern: RegExp): Recorded[] {
    return this.requests.filter((r) => pattern.test(r.path));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string): void {
    const record = { method: req.method ?? "", path: req.url ?? "", headers: req.headers, body };
    const url = new URL(req.url ?? "/", "http://x");
    if (url.pathname === "/token") {
      this.tokenRequests.push(record);
      this.token(req, res, url, body);
      return;
    }
    this.requests.push(record);
    if (this.intercept?.(req, res, body)) return;
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(url.pathname);
    if (!m) return json(res, 404, { errors: [{ code: "NOT_FOUND", message: "no route" }] });
    const [, repository = "", kind, reference = ""] = m;
    if (!this.authorized(req, res, repository)) return;
    if (kind === "manifests") {
      const found = this.manifests.get(repository)?.get(reference);
      if (!found) return json(res, 404, { errors: [{ code: "MANIFEST_UNKNOWN", message: "manifest unknown", detail: { tag: reference } }] });
      res.writeHead(200, { "content-type": found.mediaType, "docker-content-digest": digestOf(found.bytes), "content-length": found.bytes.length });
      res.end(found.bytes);
      return;
    }
    const blob = this.blobs.get(reference);
    if (!blob) return json(res, 404, { errors: [{ code: "BLOB_UNKNOWN", message: "blob unknown to registry" }] });
    const range = /^bytes=([0-9]+)-$/.exec(req.headers.range ?? "");
    if (range && this.options.ranges) {
      const start = Number(range[1]);
      if (start >= blob.length) {
        res.writeHead(416, { "content-range": `bytes */${blob.length}` });
        res.end();
        return;
      }
      res.writeHead(206, { "content-range": `bytes ${start}-${blob.length - 1}/${blob.length}`, "content-length": blob.length - start });
      res.end(blob.subarray(start));
      return;
    }
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.length });
    res.end(blob);
  }

  private authorized(req: http.IncomingMessage, res: http.ServerResponse, repository: string): boolean {
    const auth = this.auth;
    const given = req.headers.authorization;
    if (auth.kind === "none") return true;
    if (auth.kind === "basic") {
      const user = basicUser(given, auth.users);
      if (user !== undefined) return true;
      res.setHeader("www-authenticate", 'Basic realm="fake registry"');
      json(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] });
      return false;
    }
    const token = given?.startsWith("Bearer ") ? given.slice(7) : undefined;
    if (token !== undefined && auth.staticTokens?.includes(token)) return true;
    const issued = token === undefined ? undefined : this.issued.get(token);
    if (issued && !issued.expired && issued.scope === `repository:${repository}:pull`) return true;
    res.setHeader("www-authenticate", `Bearer realm="${this.url}/token",service="fake \\"registry\\"",scope="repository:${repository}:pull"`);
    json(res, 401, { errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] });
    return false;
  }

  private token(req: http.IncomingMessage, res: http.ServerResponse, url: URL, body: string): void {
    const auth = this.auth;
    if (auth.kind !== "bearer") return json(res, 404, {});
    let user: string | undefined;
    let scope: string | null;
    if (req.method === "POST") {
      if (auth.noOAuth) return json(res, 405, {});
      const form = new URLSearchParams(body);
      scope = form.get("scope");
      user = auth.identityTokens?.[form.get("refresh_token") ?? ""];
      if (form.get("grant_type") !== "refresh_token" || form.get("client_id") !== "vmpod" || user === undefined) return json(res, 401, { error: "invalid_grant" });
    } else {
      scope = url.searchParams.get("scope");
      if (req.headers.authorization !== undefined) {
        user = basicUser(req.headers.authorization, auth.users ?? {});
        if (user === undefined) return json(res, 401, { details: "incorrect username or password" });
      } else if (!auth.anonymous) {
        return json(res, 401, { details: "credentials required" });
      }
    }
    const token = randomBytes(12).toString("hex");
    this.issued.set(token, { user, scope: scope ?? "", expired: false });
    const answer: Record<string, unknown> = req.method === "POST" ? { access_token: token } : { token };
    if (auth.expiresIn !== undefined) answer["expires_in"] = auth.expiresIn;
    json(res, 200, answer);
  }
}

function basicUser(header: string | undefined, users: Readonly<Record<string, string>>): string | undefined {
  if (!header?.startsWith("Basic ")) return undefined;
  const decoded = Buffer.from(header.slice(6), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  const user = decoded.slice(0, colon);
  return colon > 0 && users[user] === decoded.slice(colon + 1) ? user : undefined;
}

export function json(res: http.ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { "content-type": "application/json", "content-length": bytes.length });
  res.end(bytes);
}

/** A loopback port nothing listens on (taken, then released). */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
