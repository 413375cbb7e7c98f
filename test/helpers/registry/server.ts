/**
 * A real registry for tests: Debian's docker-registry (the distribution
 * registry, v2.8) on a free loopback port, storing in a temporary directory,
 * with no authentication, htpasswd Basic authentication or bearer tokens from
 * token-server.ts, and optionally a misbehaving front proxy (proxy.ts).
 * `stop()` kills the process group, reaps it and removes the directory.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../../src/common/exec.js";
import { freeLoopbackPort } from "./free-port.js";
import { startProxy, type RegistryProxy } from "./proxy.js";
import { startTokenServer, type TokenServer, type TokenServerOptions } from "./token-server.js";

export const REGISTRY_BINARY = "/usr/bin/docker-registry";

export interface Credentials {
  readonly username: string;
  readonly password: string;
}

export type RegistryAuth =
  | "none"
  | { readonly basic: Credentials }
  | { readonly token: Credentials & Omit<TokenServerOptions, "username" | "password"> };

export interface RegistryOptions {
  readonly auth?: RegistryAuth;
  /** Start a front proxy (proxy.ts) too. */
  readonly proxy?: boolean;
}

export interface RunningRegistry {
  /** "127.0.0.1:PORT" of the registry itself. */
  readonly host: string;
  /** "http://127.0.0.1:PORT" */
  readonly url: string;
  /** The temporary directory holding config, storage and keys; gone after stop(). */
  readonly dir: string;
  readonly pid: number;
  readonly authKind: "none" | "basic" | "token";
  /** What pushes and skopeo should present, when auth is on. */
  readonly credentials?: Credentials;
  readonly tokenServer?: TokenServer;
  readonly proxy?: RegistryProxy;
  /** Everything the registry printed so far. */
  output(): string;
  /** Idempotent. */
  stop(): Promise<void>;
}

/** Registries still running: killed when the test process exits without stopping them (a test killed mid-run). */
const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) {
    try {
      process.kill(-(child.pid as number), "SIGKILL");
    } catch {
      // already gone
    }
  }
});

const START_ATTEMPTS = 4;
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

export async function startRegistry(options: RegistryOptions = {}): Promise<RunningRegistry> {
  const auth = options.auth ?? "none";
  const dir = await mkdtemp(join(tmpdir(), "vmpod-registry-"));
  let tokenServer: TokenServer | undefined;
  let proxy: RegistryProxy | undefined;
  try {
    let authYaml = "";
    let credentials: Credentials | undefined;
    if (auth !== "none" && "basic" in auth) {
      credentials = auth.basic;
      const { stdout } = await run("htpasswd", ["-Bbn", auth.basic.username, auth.basic.password], { whenMissing: "install the Debian package apache2-utils" });
      await writeFile(join(dir, "htpasswd"), stdout);
      authYaml = `auth:\n  htpasswd:\n    realm: vmpod-test-registry\n    path: ${join(dir, "htpasswd")}\n`;
    } else if (auth !== "none") {
      credentials = { username: auth.token.username, password: auth.token.password };
      tokenServer = await startTokenServer(dir, auth.token);
      authYaml =
        `auth:\n  token:\n    realm: ${tokenServer.realm}\n    service: ${tokenServer.service}\n` +
        `    issuer: ${tokenServer.issuer}\n    rootcertbundle: ${tokenServer.certPath}\n`;
    }
    const started = await launch(dir, authYaml);
    if (options.proxy === true) proxy = await startProxy(started.host);
    const authKind = auth === "none" ? "none" : "basic" in auth ? "basic" : "token";
    let stopped: Promise<void> | undefined;
    return {
      host: started.host,
      url: `http://${started.host}`,
      dir,
      pid: started.child.pid as number,
      authKind,
      ...(credentials === undefined ? {} : { credentials }),
      ...(tokenServer === undefined ? {} : { tokenServer }),
      ...(proxy === undefined ? {} : { proxy }),
      output: () => started.output.join(""),
      stop: () => (stopped ??= stopAll(started.child, tokenServer, proxy, dir)),
    };
  } catch (err) {
    await proxy?.stop();
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

interface Launched {
  readonly child: ChildProcess;
  readonly host: string;
  readonly output: string[];
}

/** Picks a port, writes the config, starts the registry and waits for /v2/; retries when the port was taken meanwhile. */
async function launch(dir: string, authYaml: string): Promise<Launched> {
  let lastOutput = "";
  for (let attempt = 1; attempt <= START_ATTEMPTS; attempt++) {
    const port = await freeLoopbackPort();
    const host = `127.0.0.1:${port}`;
    const configPath = join(dir, "config.yml");
    await writeFile(configPath, config(dir, host, authYaml));
    const child = spawn(REGISTRY_BINARY, ["serve", configPath], { detached: true, stdio: ["ignore", "pipe", "pipe"] });
    live.add(child);
    child.once("exit", () => live.delete(child));
    const output: string[] = [];
    child.stdout?.on("data", (b: Buffer) => output.push(b.toString()));
    child.stderr?.on("data", (b: Buffer) => output.push(b.toString()));
    const exited = new Promise<string>((resolve) => {
      child.once("error", (err) => resolve(`could not start ${REGISTRY_BINARY}: ${err.message}`));
      child.once("exit", (code, signal) => resolve(`exited (${signal ?? `code ${code}`})`));
    });
    const waiting = { done: false };
    const outcome = await Promise.race([waitReady(host, waiting).then(() => "ready"), exited, sleep(READY_TIMEOUT_MS).then(() => "timeout")]);
    waiting.done = true;
    if (outcome === "ready") return { child, host, output };
    await killGroup(child);
    lastOutput = `${outcome}\n${output.join("")}`;
    if (!/address already in use/.test(lastOutput)) break;
  }
  throw new Error(`docker-registry did not start: ${lastOutput}`);
}

function config(dir: string, host: string, authYaml: string): string {
  return [
    "version: 0.1",
    "log:",
    "  level: info",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${join(dir, "data")}`,
    "  delete:",
    "    enabled: true",
    "  maintenance:",
    "    uploadpurging:",
    "      enabled: false",
    "http:",
    `  addr: ${host}`,
    "  secret: vmpod-test-registry-secret",
    "health:",
    "  storagedriver:",
    "    enabled: false",
    "",
  ].join("\n") + authYaml;
}

/** Resolves once GET /v2/ gets any HTTP answer (401 included: auth is on). */
async function waitReady(host: string, waiting: { done: boolean }): Promise<void> {
  while (!waiting.done) {
    if (await answers(host)) return;
    await sleep(50);
  }
}

function answers(host: string): Promise<boolean> {
  const [hostname, port] = [host.slice(0, host.lastIndexOf(":")), Number(host.slice(host.lastIndexOf(":") + 1))];
  return new Promise((resolve) => {
    const req = request({ hostname, port, path: "/v2/", method: "GET", agent: false, timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode === 200 || res.statusCode === 401);
    });
    req.on("timeout", () => req.destroy());
    req.on("error", () => resolve(false));
    req.end();
  });
}

async function stopAll(child: ChildProcess, tokenServer: TokenServer | undefined, proxy: RegistryProxy | undefined, dir: string): Promise<void> {
  await proxy?.stop();
  await killGroup(child);
  await tokenServer?.stop();
  await rm(dir, { recursive: true, force: true });
}

/** SIGTERM to the process group, SIGKILL if it lingers; resolves once the child is reaped. */
async function killGroup(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const signal = (sig: NodeJS.Signals): void => {
    try {
      process.kill(-(child.pid as number), sig);
    } catch {
      // already gone
    }
  };
  signal("SIGTERM");
  const timer = setTimeout(() => signal("SIGKILL"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
