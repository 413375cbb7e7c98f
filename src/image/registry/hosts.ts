/**
 * Where a registry host is reached: its mirrors in the configured order,
 * then the host itself (docker.io is served by registry-1.docker.io), each
 * with its scheme and TLS settings. Connections are pooled in one undici
 * Agent per distinct TLS setting, made on first use and closed by close().
 */
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { rootCertificates } from "node:tls";
import { Agent, type Dispatcher } from "undici";
import { VmpodError } from "../../common/errors.js";
import type { RegistryHostConfig } from "../../config/types.js";
import { DOCKER_HUB } from "../reference.js";

/** One place a registry's API is served. */
export interface EndpointTarget {
  /** Base URL without a trailing slash ("https://registry-1.docker.io", "http://127.0.0.1:5001"); requests go to `${url}/v2/...`. */
  readonly url: string;
  /** A mirror of `registry`, or the registry itself. */
  readonly mirror: boolean;
  /** The registry host the endpoint serves ("docker.io"). */
  readonly registry: string;
}

/** An endpoint with the connection pool its TLS settings call for. */
export interface Endpoint extends EndpointTarget {
  readonly dispatcher: Dispatcher;
}

export interface HostsOptions {
  /** Milliseconds allowed to open a connection (TCP and TLS). */
  readonly connectTimeoutMs: number;
}

const DOCKER_HUB_API = "https://registry-1.docker.io";

interface TlsSetting {
  readonly caFiles: readonly string[];
  readonly insecureSkipVerify: boolean;
}

export class RegistryHosts {
  private readonly agents = new Map<string, Promise<Agent>>();
  private readonly caFiles = new Map<string, Promise<string>>();
  private closed = false;

  constructor(
    private readonly hosts: Readonly<Record<string, RegistryHostConfig>>,
    private readonly options: HostsOptions,
  ) {}

  /** Where `registry` ("docker.io", "127.0.0.1:5000") is served: its mirrors in order, then itself. */
  targets(registry: string): EndpointTarget[] {
    const config = this.hosts[registry];
    const mirrors = (config?.mirrors ?? []).map((m) => ({ url: baseUrl(new URL(m)), mirror: true, registry }));
    return [...mirrors, { url: baseUrl(new URL(upstreamUrl(registry, config))), mirror: false, registry }];
  }

  /**
   * The target with its connection pool: a mirror's TLS settings are those
   * configured for the mirror's own host, the registry's those of the
   * registry. Fails when a CA file cannot be read.
   */
  async endpoint(target: EndpointTarget): Promise<Endpoint> {
    const tls = target.mirror ? tlsOf(this.hosts[new URL(target.url).host]) : tlsOf(this.hosts[target.registry]);
    return { ...target, dispatcher: await this.agentFor(tls) };
  }

  /**
   * The dispatcher for any other URL (a token service, a redirect target):
   * the TLS settings configured for its host, else `fallback`, else the
   * system's trust.
   */
  async dispatcherFor(url: URL, fallback?: Dispatcher): Promise<Dispatcher> {
    const config = this.hosts[url.host];
    if (config === undefined && fallback !== undefined) return fallback;
    return this.agentFor(tlsOf(config));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const agents = await Promise.allSettled([...this.agents.values()]);
    this.agents.clear();
    await Promise.all(agents.map((a) => (a.status === "fulfilled" ? a.value.close() : undefined)));
  }

  private agentFor(tls: TlsSetting): Promise<Agent> {
    if (this.closed) return Promise.reject(new VmpodError("FailedPrecondition", "the registry client is closed"));
    const key = JSON.stringify([[...tls.caFiles].sort(), tls.insecureSkipVerify]);
    let agent = this.agents.get(key);
    if (agent === undefined) {
      agent = this.makeAgent(tls);
      this.agents.set(key, agent);
      // A CA file that cannot be read is reported to every caller until it can.
      agent.catch(() => this.agents.delete(key));
    }
    return agent;
  }

  private async makeAgent(tls: TlsSetting): Promise<Agent> {
    const extra = await Promise.all(tls.caFiles.map((f) => this.readCa(f)));
    return new Agent({
      connect: {
        timeout: this.options.connectTimeoutMs,
        rejectUnauthorized: !tls.insecureSkipVerify,
        // Node's `ca` replaces its default trust; the configured CAs are added to it.
        ...(extra.length > 0 ? { ca: [...rootCertificates, ...extra] } : {}),
      },
    });
  }

  private readCa(path: string): Promise<string> {
    let pem = this.caFiles.get(path);
    if (pem === undefined) {
      pem = readFile(path, "utf8").then(
        (text) => {
          if (!text.includes("-----BEGIN CERTIFICATE-----")) throw new VmpodError("InvalidArgument", `CA file ${path} holds no PEM certificate`);
          return text;
        },
        (err: unknown) => {
          throw new VmpodError("FailedPrecondition", `read CA file ${path}`, { cause: err });
        },
      );
      this.caFiles.set(path, pem);
      pem.catch(() => this.caFiles.delete(path));
    }
    return pem;
  }
}

/** The registry's own API URL: https, or plain http where configured or (unless refused) on loopback. */
export function upstreamUrl(registry: string, config: RegistryHostConfig | undefined): string {
  if (registry === DOCKER_HUB) return config?.plainHttp === true ? "http://registry-1.docker.io" : DOCKER_HUB_API;
  const plain = config?.plainHttp ?? isLoopbackHost(registry);
  return `${plain ? "http" : "https"}://${registry}`;
}

/** localhost, 127.0.0.0/8 and ::1, with or without a port. */
export function isLoopbackHost(hostPort: string): boolean {
  let host = hostPort;
  if (host.startsWith("[")) host = host.slice(1, host.indexOf("]"));
  else if (host.includes(":") && isIP(host) === 0) host = host.slice(0, host.lastIndexOf(":"));
  host = host.toLowerCase();
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

function tlsOf(config: RegistryHostConfig | undefined): TlsSetting {
  return { caFiles: config?.caFiles ?? [], insecureSkipVerify: config?.insecureSkipVerify ?? false };
}

function baseUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, "")}`;
}
