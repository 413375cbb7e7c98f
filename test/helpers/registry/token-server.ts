/**
 * The token service of a test registry with bearer authentication: the
 * docker token flow, small and strict. `GET /token?service=&scope=` with Basic
 * credentials (or `POST /token` with an OAuth2 password or refresh-token
 * grant) answers a JWT signed RS256 with a key made by `openssl`, whose
 * self-signed certificate rides in the header's `x5c` and is the registry's
 * `rootcertbundle`. It caches nothing and counts every request, so tests can
 * see whether a client reuses its tokens.
 */
import { createPrivateKey, randomUUID, sign, X509Certificate, type KeyObject } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { run } from "../../../src/common/exec.js";
import { closeServer, listenLoopback } from "./free-port.js";

export const TOKEN_SERVICE = "vmpod-test-registry";
export const TOKEN_ISSUER = "vmpod-test-token-issuer";

export interface TokenServerOptions {
  readonly username: string;
  readonly password: string;
  /** Seconds a token lives (`expires_in`); 300 unless said. */
  readonly expiresIn?: number;
  /** A refresh token (CRI's identityToken) accepted by `POST /token` with grant_type=refresh_token. */
  readonly identityToken?: string;
  /** Hand requests without credentials a token with no access (as public registries do) instead of 401. */
  readonly anonymous?: boolean;
}

/** One request the token service answered. */
export interface TokenRequest {
  readonly method: string;
  readonly service: string;
  readonly scopes: readonly string[];
  /** The authenticated user, "" for anonymous, undefined when refused. */
  readonly user: string | undefined;
  readonly status: number;
}

export interface TokenServer {
  /** `http://127.0.0.1:PORT/token` */
  readonly realm: string;
  readonly service: string;
  readonly issuer: string;
  /** PEM file of the signing certificate, for the registry's `rootcertbundle`. */
  readonly certPath: string;
  readonly requests: readonly TokenRequest[];
  /** Tokens handed out (requests answered 200). */
  issued(): number;
  stop(): Promise<void>;
}

interface Access {
  readonly type: string;
  readonly name: string;
  readonly actions: string[];
}

/** Makes the key and certificate in `dir` and starts the service on a free loopback port. */
export async function startTokenServer(dir: string, options: TokenServerOptions): Promise<TokenServer> {
  const keyPath = join(dir, "token-key.pem");
  const certPath = join(dir, "token-cert.pem");
  await run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2", "-subj", "/CN=vmpod test token issuer", "-keyout", keyPath, "-out", certPath], {
    whenMissing: "install the Debian package openssl",
  });
  const key = createPrivateKey(await readFile(keyPath));
  const certDer = new X509Certificate(await readFile(certPath)).raw;
  const requests: TokenRequest[] = [];
  const expiresIn = options.expiresIn ?? 300;

  const server = createServer((req, res) => {
    void answer(req, res).catch((err: unknown) => {
      res.writeHead(500, { "content-type": "text/plain" }).end(String(err));
    });
  });

  async function answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://token");
    if (url.pathname !== "/token") {
      res.writeHead(404).end();
      return;
    }
    let params = url.searchParams;
    let user: string | undefined;
    if (req.method === "POST") {
      params = new URLSearchParams(await readBody(req));
      const grant = params.get("grant_type");
      if (grant === "password" && params.get("username") === options.username && params.get("password") === options.password) user = options.username;
      if (grant === "refresh_token" && options.identityToken !== undefined && params.get("refresh_token") === options.identityToken) user = options.username;
    } else if (req.method === "GET") {
      user = basicUser(req.headers.authorization, options);
    } else {
      res.writeHead(405).end();
      return;
    }
    const service = params.get("service") ?? "";
    const scopes = params.getAll("scope").flatMap((s) => s.split(" ")).filter((s) => s !== "");
    if (user === undefined && options.anonymous === true && req.headers.authorization === undefined && req.method === "GET") user = "";
    if (user === undefined || service !== TOKEN_SERVICE) {
      const status = user === undefined ? 401 : 400;
      requests.push({ method: req.method, service, scopes, user: undefined, status });
      res.writeHead(status, { "content-type": "application/json", ...(status === 401 ? { "www-authenticate": 'Basic realm="vmpod-test-token"' } : {}) });
      res.end(JSON.stringify({ errors: [{ code: status === 401 ? "UNAUTHORIZED" : "DENIED", message: status === 401 ? "bad credentials" : `unknown service ${service}` }] }));
      return;
    }
    const access = user === "" ? [] : scopes.map(parseScope).filter((a): a is Access => a !== undefined);
    const now = Math.floor(Date.now() / 1000);
    const token = jwt(key, certDer, {
      iss: TOKEN_ISSUER,
      sub: user,
      aud: service,
      exp: now + expiresIn,
      nbf: now - 10,
      iat: now,
      jti: randomUUID(),
      access,
    });
    requests.push({ method: req.method, service, scopes, user, status: 200 });
    const body = {
      token,
      access_token: token,
      expires_in: expiresIn,
      issued_at: new Date(now * 1000).toISOString(),
      ...(req.method === "POST" && options.identityToken !== undefined ? { refresh_token: options.identityToken } : {}),
    };
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(body));
  }

  const host = await listenLoopback(server);
  return {
    realm: `http://${host}/token`,
    service: TOKEN_SERVICE,
    issuer: TOKEN_ISSUER,
    certPath,
    requests,
    issued: () => requests.filter((r) => r.status === 200).length,
    stop: () => closeServer(server),
  };
}

function basicUser(header: string | undefined, options: TokenServerOptions): string | undefined {
  if (header === undefined || !header.toLowerCase().startsWith("basic ")) return undefined;
  const decoded = Buffer.from(header.slice(6).trim(), "base64").toString("utf8");
  const colon = decoded.indexOf(":");
  if (colon < 0) return undefined;
  return decoded.slice(0, colon) === options.username && decoded.slice(colon + 1) === options.password ? options.username : undefined;
}

/** "repository:vmpod-test/busybox:pull,push" → { type, name, actions }. */
function parseScope(scope: string): Access | undefined {
  const first = scope.indexOf(":");
  const last = scope.lastIndexOf(":");
  if (first < 0 || last === first) return undefined;
  return { type: scope.slice(0, first), name: scope.slice(first + 1, last), actions: scope.slice(last + 1).split(",").filter((a) => a !== "") };
}

function jwt(key: KeyObject, certDer: Buffer, claims: Record<string, unknown>): string {
  const header = { typ: "JWT", alg: "RS256", x5c: [certDer.toString("base64")] };
  const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const signature = sign("sha256", Buffer.from(signingInput), key);
  return `${signingInput}.${b64url(signature)}`;
}

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
