/**
 * The registry client (OCI distribution v2, pull side): manifests and
 * indexes by tag or digest, verified against their digest, and blob
 * downloads that can resume. Each request goes to the registry's mirrors in
 * order, then to the registry itself; authentication, redirects and the
 * mapping of failures to error kinds happen here.
 */
import { PassThrough, type Readable } from "node:stream";
import { VmpodError, messageOf } from "../../common/errors.js";
import type { Logger } from "../../common/log.js";
import type { RegistryHostConfig } from "../../config/types.js";
import { digestOf, isDigest, type Digest } from "../digest.js";
import { MANIFEST_ACCEPT, detectMediaType } from "../manifest.js";
import { repositoryName } from "../reference.js";
import type { BlobDownload, Descriptor, FetchedManifest, ImageReference, Registry, RegistryCredentials, RequestOptions } from "../types.js";
import { Authenticator, authFailed, type AuthScope } from "./auth.js";
import { registryErrors, statusError, transportError } from "./errors.js";
import { RegistryHosts, type Endpoint, type EndpointTarget } from "./hosts.js";
import { DEFAULT_TIMEOUTS, drain, header, headerValues, readBody, send, type Response, type Timeouts } from "./http.js";

export interface RegistryClientOptions {
  /** `[registries."host"]` of the configuration. */
  readonly hosts: Readonly<Record<string, RegistryHostConfig>>;
  readonly logger: Logger;
  readonly userAgent?: string;
  readonly timeouts?: Partial<Timeouts>;
  /** The clock tokens expire by (milliseconds); Date.now unless a test moves time. */
  readonly now?: () => number;
}

/** Manifests and indexes larger than this are refused. */
export const MAX_MANIFEST_BYTES = 4 << 20;
const MAX_REDIRECTS = 5;
const REDIRECTS = new Set([301, 302, 303, 307, 308]);

export class RegistryClient implements Registry {
  private readonly hosts: RegistryHosts;
  private readonly auth: Authenticator;
  private readonly logger: Logger;
  private readonly userAgent: string;
  private readonly timeouts: Timeouts;
  /** Which endpoint last served a manifest of a repository: its blobs are asked there first. */
  private readonly served = new Map<string, string>();
  private closed = false;

  constructor(options: RegistryClientOptions) {
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...options.timeouts };
    this.logger = options.logger;
    this.userAgent = options.userAgent ?? "vmpod";
    this.hosts = new RegistryHosts(options.hosts, { connectTimeoutMs: this.timeouts.connectMs });
    this.auth = new Authenticator({ hosts: this.hosts, logger: this.logger, userAgent: this.userAgent, timeouts: this.timeouts, now: options.now ?? Date.now });
  }

  getManifest(ref: ImageReference, options: RequestOptions = {}): Promise<FetchedManifest> {
    return this.manifest(ref, ref.digest ?? ref.tag ?? "latest", ref.digest, undefined, options);
  }

  /** Asked first where the repository's last manifest came from (an index's entry lives beside the index). */
  getManifestByDigest(ref: ImageReference, digest: Digest, options: RequestOptions = {}): Promise<FetchedManifest> {
    return this.manifest(ref, digest, digest, this.served.get(repositoryName(ref)), options);
  }

  async openBlob(ref: ImageReference, descriptor: Descriptor, options: RequestOptions & { readonly offset?: number } = {}): Promise<BlobDownload> {
    const offset = options.offset ?? 0;
    if (!Number.isSafeInteger(offset) || offset < 0) throw new VmpodError("InvalidArgument", `blob offset ${offset} is not a byte position`);
    const what = `blob ${repositoryName(ref)}@${descriptor.digest}`;
    return this.onEndpoints(ref, what, options.signal, this.served.get(repositoryName(ref)), async (endpoint) => {
      const where = `${what} from ${endpoint.url}`;
      const path = `blobs/${descriptor.digest}`;
      let res = await this.exchange(endpoint, ref, path, offset > 0 ? { range: `bytes=${offset}-` } : {}, options);
      if (res.statusCode === 416 && offset > 0) {
        // The range is refused (the blob is shorter than the caller thought): start again from 0.
        await drain(res);
        res = await this.exchange(endpoint, ref, path, {}, options);
      }
      if (res.statusCode === 206 && offset > 0) {
        const range = /^bytes ([0-9]+)-/.exec(header(res, "content-range") ?? "");
        if (range === null || Number(range[1]) !== offset) {
          res.body.destroy();
          throw new VmpodError("Unavailable", `${where}: asked for bytes from ${offset}, got ${JSON.stringify(header(res, "content-range") ?? "no Content-Range")}`);
        }
        return { body: guardBody(res.body, where, options.signal, ref.registry), offset };
      }
      if (res.statusCode !== 200) throw statusError(where, res.statusCode, await drain(res));
      return { body: guardBody(res.body, where, options.signal, ref.registry), offset: 0 };
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.auth.clear();
    this.served.clear();
    await this.hosts.close();
  }

  private async manifest(ref: ImageReference, reference: string, expected: Digest | undefined, preferred: string | undefined, options: RequestOptions): Promise<FetchedManifest> {
    const what = `manifest ${repositoryName(ref)}${isDigest(reference) ? "@" : ":"}${reference}`;
    return this.onEndpoints(ref, what, options.signal, preferred, async (endpoint) => {
      const where = `${what} from ${endpoint.url}`;
      const res = await this.exchange(endpoint, ref, `manifests/${reference}`, { accept: MANIFEST_ACCEPT.join(", ") }, options);
      if (res.statusCode !== 200) throw statusError(where, res.statusCode, await drain(res));
      const bytes = await readBody(res, MAX_MANIFEST_BYTES, where);
      const digest = digestOf(bytes);
      if (expected !== undefined && digest !== expected) {
        throw new VmpodError("InvalidArgument", `${where}: the registry's bytes have digest ${digest}, not the ${expected} asked for`);
      }
      const announced = header(res, "docker-content-digest");
      if (expected === undefined && announced !== undefined && isDigest(announced) && announced !== digest) {
        throw new VmpodError("InvalidArgument", `${where}: the bytes have digest ${digest}, the registry announced ${announced} (Docker-Content-Digest)`);
      }
      const mediaType = detectMediaType(bytes, header(res, "content-type"));
      this.served.set(repositoryName(ref), endpoint.url);
      return { mediaType, digest, bytes, endpoint: endpoint.url };
    });
  }

  /**
   * Runs `attempt` on each endpoint of the registry in turn (`preferred`
   * first, then mirrors, then the registry) until one succeeds. Failures
   * other than the caller's abort move on to the next endpoint; when all
   * fail, the registry's own failure is thrown, naming the mirrors'.
   */
  private async onEndpoints<T>(ref: ImageReference, what: string, signal: AbortSignal | undefined, preferred: string | undefined, attempt: (endpoint: Endpoint) => Promise<T>): Promise<T> {
    if (this.closed) throw new VmpodError("FailedPrecondition", `${what}: the registry client is closed`);
    if (signal?.aborted) throw transportError(what, signal.reason, signal);
    const targets = this.hosts.targets(ref.registry);
    const first = targets.findIndex((e) => e.url === preferred);
    if (first > 0) targets.unshift(...targets.splice(first, 1));
    const failures: { endpoint: EndpointTarget; error: VmpodError }[] = [];
    for (const target of targets) {
      try {
        return await attempt(await this.hosts.endpoint(target));
      } catch (err) {
        const error = transportError(`${what} from ${target.url}`, err, signal, ref.registry);
        if (signal?.aborted) throw error;
        failures.push({ endpoint: target, error: err instanceof VmpodError ? err : error });
        if (failures.length < targets.length) {
          this.logger.debug("registry endpoint failed, trying the next", { endpoint: target.url, what, error: messageOf(err) });
        }
      }
    }
    const upstream = failures.find((f) => !f.endpoint.mirror) ?? failures[failures.length - 1];
    if (upstream === undefined) throw new VmpodError("Internal", `${what}: no endpoint for registry ${ref.registry}`);
    const mirrors = failures.filter((f) => f !== upstream);
    if (mirrors.length === 0) throw upstream.error;
    const summary = mirrors.map((f) => `${f.endpoint.url}: ${f.error.message}`).join("; ");
    throw new VmpodError(upstream.error.kind, `${upstream.error.message} (mirrors failed too: ${summary})`);
  }

  /**
   * One authenticated GET of `/v2/NAME/PATH` on `endpoint`, redirects
   * followed. A 401 is answered once (token or Basic); a second 401 is an
   * authentication failure. The pull's credentials go to the registry only,
   * never to its mirrors.
   */
  private async exchange(endpoint: Endpoint, ref: ImageReference, path: string, headers: Record<string, string>, options: RequestOptions): Promise<Response> {
    const credentials: RegistryCredentials | undefined = endpoint.mirror ? undefined : options.credentials;
    const scope: AuthScope = { endpoint, repository: ref.repository, credentials };
    const url = `${endpoint.url}/v2/${ref.repository}/${path}`;
    let authorization = await this.auth.current(scope, options.signal);
    for (let round = 0; ; round++) {
      const res = await this.follow(url, endpoint, { ...headers, "user-agent": this.userAgent }, authorization, options.signal);
      if (res.statusCode !== 401) return res;
      const body = await drain(res);
      if (round > 0) {
        const detail = registryErrors(body);
        const why = credentials ? "the registry refused the credentials" : "the repository does not exist or needs credentials";
        throw authFailed(scope, `${why} (HTTP 401${detail ? `, ${detail}` : ""})`);
      }
      authorization = await this.auth.respond(scope, headerValues(res, "www-authenticate"), authorization, options.signal);
    }
  }

  /** A GET following redirects; Authorization is dropped once the request leaves the endpoint's origin. */
  private async follow(url: string, endpoint: Endpoint, headers: Record<string, string>, authorization: string | undefined, signal: AbortSignal | undefined): Promise<Response> {
    let current = new URL(url);
    let dispatcher = endpoint.dispatcher;
    let auth = authorization;
    for (let hop = 0; ; hop++) {
      const res = await send(current.href, { headers: auth === undefined ? headers : { ...headers, authorization: auth }, dispatcher, signal, timeouts: this.timeouts });
      if (!REDIRECTS.has(res.statusCode)) return res;
      const location = header(res, "location");
      await drain(res);
      if (location === undefined) throw new VmpodError("Unavailable", `${current.origin} answered HTTP ${res.statusCode} without a Location`);
      if (hop >= MAX_REDIRECTS) throw new VmpodError("Unavailable", `more than ${MAX_REDIRECTS} redirects from ${url}`);
      const next = new URL(location, current);
      if (next.protocol !== "https:" && next.protocol !== "http:") throw new VmpodError("Unavailable", `redirect to ${next.protocol} URL refused`);
      if (next.origin !== current.origin) {
        auth = undefined;
        dispatcher = await this.hosts.dispatcherFor(next, endpoint.dispatcher);
      }
      current = next;
    }
  }
}

/** The blob's body, its failures turned into VmpodErrors; destroying it ends the download. */
function guardBody(source: Readable, what: string, signal: AbortSignal | undefined, registry: string): Readable {
  const out = new PassThrough();
  source.on("error", (err) => out.destroy(transportError(`${what}: read`, err, signal, registry)));
  out.on("close", () => {
    if (!source.destroyed) source.destroy();
  });
  source.pipe(out);
  return out;
}
