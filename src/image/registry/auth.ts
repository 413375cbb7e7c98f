/**
 * Registry authentication: answers a 401's challenge with Basic credentials
 * or a bearer token from the token service the challenge names (a GET with
 * Basic credentials, or an OAuth2 refresh-token POST with an identity token),
 * and caches tokens until shortly before they expire so that later requests
 * send them up front. Passwords and tokens never appear in messages.
 */
import { createHash } from "node:crypto";
import { VmpodError } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { RegistryCredentials } from "../types.js";
import { parseWwwAuthenticate, type Challenge } from "./challenge.js";
import { statusError, transportError } from "./errors.js";
import type { Endpoint, RegistryHosts } from "./hosts.js";
import { drain, readBody, send, type Timeouts } from "./http.js";

/** Who asks for what: an endpoint, a repository on it, and the pull's credentials. */
export interface AuthScope {
  readonly endpoint: Endpoint;
  readonly repository: string;
  readonly credentials?: RegistryCredentials | undefined;
}

interface Token {
  readonly header: string;
  /** Milliseconds (the clock of `now`) after which the token is not sent any more. */
  readonly expiresAt: number;
}

const DEFAULT_EXPIRES_IN_S = 60;
const MAX_TOKEN_RESPONSE = 1 << 20;

export interface AuthenticatorOptions {
  readonly hosts: RegistryHosts;
  readonly logger: Logger;
  readonly userAgent: string;
  readonly timeouts: Timeouts;
  readonly now: () => number;
}

export class Authenticator {
  /** The challenge an endpoint gave for a repository and credential, so later requests authenticate up front. */
  private readonly challenges = new Map<string, Challenge>();
  private readonly tokens = new Map<string, Token>();
  private readonly pending = new Map<string, Promise<Token>>();

  constructor(private readonly options: AuthenticatorOptions) {}

  /** The Authorization header to send with a request now, if one is known; may fetch a token whose challenge is known. */
  async current(scope: AuthScope, signal?: AbortSignal): Promise<string | undefined> {
    const registryToken = scope.credentials?.registryToken;
    if (registryToken) return `Bearer ${registryToken}`;
    const challenge = this.challenges.get(scopeKey(scope));
    if (challenge === undefined) return undefined;
    return this.answer(scope, challenge, undefined, signal);
  }

  /**
   * The Authorization header to retry a request with after a 401 carrying
   * `wwwAuthenticate`; `sent` is the header the refused request had.
   */
  async respond(scope: AuthScope, wwwAuthenticate: readonly string[], sent: string | undefined, signal?: AbortSignal): Promise<string> {
    const challenges = parseWwwAuthenticate(wwwAuthenticate);
    const challenge = challenges.find((c) => c.scheme === "bearer") ?? challenges.find((c) => c.scheme === "basic");
    if (challenge === undefined) {
      const schemes = challenges.map((c) => c.scheme).join(", ") || "none";
      throw new VmpodError("FailedPrecondition", `${describe(scope)}: the registry asks for authentication with a scheme vmpod does not speak (${schemes})`);
    }
    if (scope.credentials?.registryToken) throw authFailed(scope, "the registry refused the registry token");
    this.challenges.set(scopeKey(scope), challenge);
    return this.answer(scope, challenge, sent, signal);
  }

  /** Drops every cached token and challenge. */
  clear(): void {
    this.challenges.clear();
    this.tokens.clear();
  }

  private async answer(scope: AuthScope, challenge: Challenge, refused: string | undefined, signal?: AbortSignal): Promise<string> {
    if (challenge.scheme === "basic") {
      const basic = basicHeader(scope.credentials);
      if (basic === undefined) throw authFailed(scope, "the registry requires credentials and none were given");
      if (basic === refused) throw authFailed(scope, "the registry refused the credentials");
      return basic;
    }
    const key = this.tokenKey(scope, challenge);
    const cached = this.tokens.get(key);
    if (cached !== undefined) {
      if (cached.header !== refused && cached.expiresAt > this.options.now()) return cached.header;
      this.tokens.delete(key);
    }
    // Requests in parallel (layers) share one token request.
    let pending = this.pending.get(key);
    const shared = pending !== undefined;
    if (pending === undefined) {
      pending = this.fetchToken(scope, challenge, signal).finally(() => this.pending.delete(key));
      this.pending.set(key, pending);
    }
    let token: Token;
    try {
      token = await pending;
    } catch (err) {
      // Another caller's abort ended the shared request: ask again for this one.
      if (!shared || signal?.aborted || !(err instanceof VmpodError && err.kind === "Canceled")) throw err;
      token = await this.fetchToken(scope, challenge, signal);
    }
    this.tokens.set(key, token);
    return token.header;
  }

  private tokenKey(scope: AuthScope, challenge: Challenge): string {
    return JSON.stringify([challenge.params["realm"] ?? "", challenge.params["service"] ?? "", pullScope(scope), credentialId(scope.credentials)]);
  }

  private async fetchToken(scope: AuthScope, challenge: Challenge, signal?: AbortSignal): Promise<Token> {
    const realm = challenge.params["realm"];
    let realmUrl: URL;
    try {
      realmUrl = new URL(realm ?? "");
    } catch {
      throw new VmpodError("Unavailable", `${describe(scope)}: the registry's bearer challenge has no usable realm (${JSON.stringify(realm ?? "")})`);
    }
    if (realmUrl.protocol !== "https:" && realmUrl.protocol !== "http:") {
      throw new VmpodError("Unavailable", `${describe(scope)}: the token service ${realmUrl.origin} is not http(s)`);
    }
    const service = challenge.params["service"];
    const wanted = pullScope(scope);
    const dispatcher = await this.options.hosts.dispatcherFor(realmUrl, scope.endpoint.dispatcher);
    const credentials = scope.credentials;
    const what = `${describe(scope)}: get a token from ${realmUrl.origin}${realmUrl.pathname}`;
    const base = { dispatcher, signal, timeouts: this.options.timeouts };
    const started = this.options.now();

    try {
      let res;
      if (credentials?.identityToken) {
        const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: credentials.identityToken, client_id: "vmpod" });
        if (service !== undefined) form.set("service", service);
        form.set("scope", wanted);
        res = await send(realmUrl.href, {
          ...base,
          method: "POST",
          headers: { "user-agent": this.options.userAgent, "content-type": "application/x-www-form-urlencoded", accept: "application/json" },
          body: form.toString(),
        });
        if (res.statusCode === 404 || res.statusCode === 405) {
          // Token services without OAuth2 support take the same request as a GET.
          await drain(res);
          res = undefined;
        }
      }
      if (res === undefined) {
        const url = new URL(realmUrl);
        if (service !== undefined) url.searchParams.set("service", service);
        url.searchParams.set("scope", wanted);
        const user = userPass(credentials);
        if (user) url.searchParams.set("account", user.username);
        const basic = basicHeader(credentials);
        res = await send(url.href, {
          ...base,
          headers: { "user-agent": this.options.userAgent, accept: "application/json", ...(basic ? { authorization: basic } : {}) },
        });
      }
      if (res.statusCode === 401 || res.statusCode === 403) {
        await drain(res);
        throw authFailed(scope, `the token service ${realmUrl.origin} refused ${credentialId(credentials) === "anonymous" ? "an anonymous pull" : "the credentials"} (HTTP ${res.statusCode})`);
      }
      if (res.statusCode !== 200) throw statusError(what, res.statusCode, await drain(res));
      const body = await readBody(res, MAX_TOKEN_RESPONSE, "token response");
      return this.tokenFrom(body, what, started);
    } catch (err) {
      if (err instanceof VmpodError && !signal?.aborted) throw err;
      throw transportError(what, err, signal, scope.endpoint.registry);
    }
  }

  /**
   * The token's life counts from when it was asked for, on our own clock:
   * `issued_at` is not used, so a registry whose clock differs cannot make
   * tokens look expired or fresh for too long.
   */
  private tokenFrom(body: Buffer, what: string, asked: number): Token {
    let doc: { token?: unknown; access_token?: unknown; expires_in?: unknown };
    try {
      doc = JSON.parse(body.toString("utf8")) as typeof doc;
    } catch {
      throw new VmpodError("Unavailable", `${what}: the answer is not JSON`);
    }
    const token = typeof doc.token === "string" && doc.token !== "" ? doc.token : doc.access_token;
    if (typeof token !== "string" || token === "") throw new VmpodError("Unavailable", `${what}: the answer holds no token`);
    const expiresIn = typeof doc.expires_in === "number" && doc.expires_in > 0 ? doc.expires_in : DEFAULT_EXPIRES_IN_S;
    const life = expiresIn * 1000;
    const margin = Math.min(10_000, life / 10);
    this.options.logger.debug("registry token obtained", { registry: what, expiresIn });
    return { header: `Bearer ${token}`, expiresAt: asked + life - margin };
  }
}

/** `repository:NAME:pull`: all a pull needs. */
function pullScope(scope: AuthScope): string {
  return `repository:${scope.repository}:pull`;
}

function scopeKey(scope: AuthScope): string {
  return JSON.stringify([scope.endpoint.url, scope.repository, credentialId(scope.credentials)]);
}

/** A stable name for a set of credentials that does not hold them. */
function credentialId(c: RegistryCredentials | undefined): string {
  if (c === undefined) return "anonymous";
  const parts = [c.username ?? "", c.password ?? "", c.auth ?? "", c.identityToken ?? "", c.registryToken ?? ""];
  if (parts.every((p) => p === "")) return "anonymous";
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 32);
}

/** username and password, from those fields or from `auth` (base64 "user:password"). */
function userPass(c: RegistryCredentials | undefined): { username: string; password: string } | undefined {
  if (c === undefined) return undefined;
  if (c.username && c.password !== undefined && c.password !== "") return { username: c.username, password: c.password };
  if (c.auth) {
    const decoded = Buffer.from(c.auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon <= 0) throw new VmpodError("InvalidArgument", "the pull's auth credential is not base64 of user:password");
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  return undefined;
}

function basicHeader(c: RegistryCredentials | undefined): string | undefined {
  const up = userPass(c);
  return up ? `Basic ${Buffer.from(`${up.username}:${up.password}`).toString("base64")}` : undefined;
}

function describe(scope: AuthScope): string {
  return `registry ${scope.endpoint.registry}${scope.endpoint.mirror ? ` (mirror ${scope.endpoint.url})` : ""}, repository ${scope.repository}`;
}

/** FailedPrecondition naming the registry and repository, never the secret. */
export function authFailed(scope: AuthScope, why: string): VmpodError {
  return new VmpodError("FailedPrecondition", `authentication failed for ${describe(scope)}: ${why}`);
}
