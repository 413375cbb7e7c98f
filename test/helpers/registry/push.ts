/**
 * The fixture's own push client (registry HTTP API v2), kept apart from the
 * project's registry client on purpose: HEAD to skip blobs the repository
 * has, POST an upload and PUT it whole with its digest, PUT manifests with
 * their media type. Answers a 401 with Basic credentials or the bearer token
 * flow, whichever the registry's challenge asks for.
 */
import type { Digest } from "../../../src/image/digest.js";
import type { Credentials } from "./server.js";

/** Where to push: a registry (or a proxy in front of one), and who we are. */
export interface PushTarget {
  readonly url: string;
  readonly credentials?: Credentials;
}

export class PushClient {
  private readonly tokens = new Map<string, string>();
  private basic = false;

  constructor(private readonly target: PushTarget) {}

  /** Uploads a blob unless the repository already has it. */
  async pushBlob(repository: string, digest: Digest, bytes: Buffer): Promise<void> {
    const scope = `repository:${repository}:pull,push`;
    const head = await this.send(scope, `/v2/${repository}/blobs/${digest}`, { method: "HEAD" });
    if (head.status === 200) return;
    const start = await this.send(scope, `/v2/${repository}/blobs/uploads/`, { method: "POST" });
    await expectStatus(start, 202, `start upload of ${digest}`);
    const location = start.headers.get("location");
    if (location === null) throw new Error(`start upload of ${digest}: no Location`);
    const url = new URL(location, this.target.url);
    url.searchParams.set("digest", digest);
    const put = await this.send(scope, url.toString(), {
      method: "PUT",
      headers: { "content-type": "application/octet-stream", "content-length": String(bytes.length) },
      body: bytes,
    });
    await expectStatus(put, 201, `upload ${digest}`);
  }

  /** PUTs a manifest or index under a tag or its digest; returns the digest the registry computed. */
  async pushManifest(repository: string, reference: string, mediaType: string, bytes: Buffer): Promise<string> {
    const res = await this.send(`repository:${repository}:pull,push`, `/v2/${repository}/manifests/${reference}`, {
      method: "PUT",
      headers: { "content-type": mediaType },
      body: bytes,
    });
    await expectStatus(res, 201, `push manifest ${repository}:${reference}`);
    return res.headers.get("docker-content-digest") ?? "";
  }

  /** One request; on a 401 it authenticates as the challenge asks and tries once more. */
  private async send(scope: string, pathOrUrl: string, init: RequestInit): Promise<Response> {
    const url = new URL(pathOrUrl, this.target.url).toString();
    const first = await fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), ...this.authorization(scope) } });
    if (first.status !== 401) return first;
    await first.arrayBuffer();
    const challenge = first.headers.get("www-authenticate") ?? "";
    const creds = this.target.credentials;
    if (creds === undefined) throw new Error(`${init.method} ${url}: the registry wants credentials (${challenge}) and the fixture has none`);
    if (/^basic/i.test(challenge)) this.basic = true;
    else if (/^bearer/i.test(challenge)) this.tokens.set(scope, await fetchToken(challenge, scope, creds));
    else throw new Error(`${init.method} ${url}: unknown challenge ${challenge}`);
    return fetch(url, { ...init, headers: { ...(init.headers as Record<string, string>), ...this.authorization(scope) } });
  }

  private authorization(scope: string): Record<string, string> {
    const creds = this.target.credentials;
    const token = this.tokens.get(scope);
    if (token !== undefined) return { authorization: `Bearer ${token}` };
    if (this.basic && creds !== undefined) return { authorization: basicAuth(creds) };
    return {};
  }
}

export function basicAuth(creds: Credentials): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
}

/** Parses `Bearer realm="…",service="…",scope="…"`. */
export function parseChallenge(header: string): Record<string, string> {
  const params: Record<string, string> = {};
  for (const m of header.replace(/^\w+\s+/, "").matchAll(/(\w+)="([^"]*)"/g)) params[m[1] as string] = m[2] as string;
  return params;
}

async function fetchToken(challenge: string, scope: string, creds: Credentials): Promise<string> {
  const params = parseChallenge(challenge);
  if (params.realm === undefined) throw new Error(`bearer challenge without realm: ${challenge}`);
  const url = new URL(params.realm);
  if (params.service !== undefined) url.searchParams.set("service", params.service);
  url.searchParams.set("scope", scope);
  const res = await fetch(url, { headers: { authorization: basicAuth(creds) } });
  await expectStatus(res, 200, `token from ${params.realm}`);
  const body = (await res.json()) as { token?: string; access_token?: string };
  const token = body.token ?? body.access_token;
  if (token === undefined) throw new Error(`token from ${params.realm}: none in the answer`);
  return token;
}

async function expectStatus(res: Response, status: number, what: string): Promise<void> {
  if (res.status === status) {
    if (res.body !== null && status !== 200) await res.arrayBuffer();
    return;
  }
  throw new Error(`${what}: HTTP ${res.status} ${await res.text()}`);
}
