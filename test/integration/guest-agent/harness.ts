/**
 * The real agent, run on the host as it runs in the guest: bundled by
 * esbuild into one CommonJS file (koffi external), started by node, talking
 * ttRPC on a unix socket.
 *
 * The host is cgroup v1 (hybrid) and crun refuses that layout, so the agent
 * runs in its own mount namespace with cgroup2 mounted on /sys/fs/cgroup,
 * as in the guest (only the controllers the host leaves to v2 are there:
 * memory, pids and cpu limits cannot be tried here). It also gets its own
 * UTS namespace (CreateSandbox sets the hostname) and network namespace
 * with loopback up (containers share the agent's network, as they share
 * the guest's).
 */
import assert from "node:assert/strict";
import { makeBusyboxRootfs as makeRootfs } from "../../../src/sandbox/smoke.js";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, rmdir } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { build } from "esbuild";
import { TtrpcClient } from "../../../src/agent/ttrpc/client.js";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService, type ProcessSchema, type SpecSchema } from "../../../src/gen/agent_pb.js";
import { VmpodError, type ErrorKind } from "../../../src/common/errors.js";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
/** The cgroup v2 hierarchy as the test (outside the agent's mount namespace) sees it. */
export const HOST_CGROUP2 = "/sys/fs/cgroup/unified";

let bundled: Promise<string> | undefined;

/** Bundles guest/agent/main.ts once per run, as the guest image build does. */
export function agentBundle(): Promise<string> {
  bundled ??= (async () => {
    // Rewritten by every run (.test-artifacts is ignored by git); .cjs: the package is an ES module one.
    const outfile = join(REPO, ".test-artifacts", "guest-agent", "agent.cjs");
    await build({
      entryPoints: [join(REPO, "guest/agent/main.ts")],
      bundle: true,
      platform: "node",
      format: "cjs",
      target: "node20",
      external: ["koffi"],
      outfile,
      logLevel: "silent",
    });
    return outfile;
  })();
  return bundled;
}

export interface AgentHandle {
  readonly dir: string;
  readonly client: TtrpcClient;
  readonly process: ChildProcess;
  readonly stateDir: string;
  /** A fresh cgroup parent for this agent's containers, relative to the cgroup root. */
  readonly cgroupParent: string;
  log(): string;
  /** Asserts the agent has no descendants left, kills it and checks what it leaves. */
  stop(): Promise<void>;
}

export interface SpawnedAgent {
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  log(): string;
}

/** Starts the bundled agent in its own mount, UTS and network namespaces (see above). */
export async function spawnAgent(args: readonly string[]): Promise<SpawnedAgent> {
  const bundle = await agentBundle();
  const script = 'mount -t cgroup2 none /sys/fs/cgroup && ip link set lo up && exec "$0" "$@"';
  const child = spawn("unshare", ["--mount", "--uts", "--net", "--propagation", "private", "sh", "-c", script, process.execPath, bundle, ...args], {
    stdio: ["ignore", "inherit", "pipe"],
    env: { ...process.env, NODE_PATH: join(REPO, "node_modules") },
  });
  let output = "";
  child.stderr?.on("data", (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolveExit) => child.once("exit", () => resolveExit()));
  return { process: child, exited, log: () => output };
}

export async function startAgent(extraArgs: readonly string[] = []): Promise<AgentHandle> {
  const dir = await mkdtemp(join(tmpdir(), "vmpod-ga-"));
  const socket = join(dir, "agent.sock");
  const stateDir = join(dir, "state");
  const spawned = await spawnAgent([
    "--listen", `unix:${socket}`, "--state-dir", stateDir, "--resolv-conf", join(dir, "resolv.conf"), "--hostname-file", join(dir, "hostname"),
    "--modules-ready", join(dir, "modules-ready"), "--log-level", "debug", ...extraArgs,
  ]);
  const { process: child, exited } = spawned;
  let conn: net.Socket;
  try {
    conn = await connectWhenReady(socket, exited, spawned.log);
  } catch (err) {
    child.kill("SIGKILL");
    await exited;
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
  const client = new TtrpcClient(conn);
  const cgroupParent = `/vmpod-test-${Math.random().toString(36).slice(2, 10)}`;
  return {
    dir,
    client,
    process: child,
    stateDir,
    cgroupParent,
    log: spawned.log,
    async stop() {
      try {
        if (child.exitCode === null && child.pid !== undefined) {
          assert.deepEqual(await descendants(child.pid), [], "processes left under the agent");
          const mountsLeft = (await readFile(`/proc/${child.pid}/mountinfo`, "utf8").catch(() => ""))
            .split("\n")
            .filter((l) => l.includes(dir));
          assert.deepEqual(mountsLeft, [], "mounts left in the agent's namespace");
        }
        const crunLeft = await readdir(join(stateDir, "crun")).catch(() => []);
        assert.deepEqual(crunLeft.filter((n) => !n.startsWith(".")), [], "containers left in crun's state");
        assert.deepEqual(await readdir(join(stateDir, "containers")).catch(() => []), [], "bundles left");
        const cgroupsLeft = await readdir(join(HOST_CGROUP2, cgroupParent), { withFileTypes: true }).catch(() => []);
        assert.deepEqual(cgroupsLeft.filter((e) => e.isDirectory()).map((e) => e.name), [], "cgroups left");
      } finally {
        client.close();
        child.kill("SIGKILL");
        await exited;
        await rmdir(join(HOST_CGROUP2, cgroupParent)).catch(() => undefined);
        await rm(dir, { recursive: true, force: true });
      }
    },
  };
}

async function connectWhenReady(path: string, exited: Promise<void>, log: () => string): Promise<net.Socket> {
  let gone = false;
  void exited.then(() => (gone = true));
  for (let i = 0; i < 300; i++) {
    if (gone) throw new Error(`agent exited before listening:\n${log()}`);
    const socket = await new Promise<net.Socket | undefined>((resolveConn) => {
      const s = net.connect(path);
      s.once("connect", () => resolveConn(s));
      s.once("error", () => resolveConn(undefined));
    });
    if (socket) return socket;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`agent did not listen on ${path}:\n${log()}`);
}

/** Every process below `pid` (pid and command line). */
export async function descendants(pid: number): Promise<string[]> {
  const parents = new Map<number, number>();
  const names = new Map<number, string>();
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const text = await readFile(`/proc/${entry}/stat`, "utf8").catch(() => "");
    const close = text.lastIndexOf(")");
    if (close < 0) continue;
    parents.set(Number(entry), Number(text.slice(close + 2).split(" ")[1]));
    names.set(Number(entry), text.slice(text.indexOf("(") + 1, close));
  }
  const out: string[] = [];
  const walk = (p: number) => {
    for (const [child, parent] of parents) {
      if (parent === p) {
        out.push(`${child} ${names.get(child) ?? "?"}`);
        walk(child);
      }
    }
  };
  walk(pid);
  return out;
}

/** A busybox root filesystem (the smoke path's), with /www for httpd. */
export async function makeBusyboxRootfs(rootfs: string): Promise<void> {
  await makeRootfs(rootfs);
  await mkdir(join(rootfs, "www"), { recursive: true });
}

const CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"];

export function processSpec(args: string[], options: { terminal?: boolean; rows?: number; columns?: number } = {}): MessageInitShape<typeof ProcessSchema> {
  return {
    Terminal: options.terminal ?? false,
    ...(options.rows !== undefined ? { ConsoleSize: { Height: options.rows, Width: options.columns ?? 80 } } : {}),
    User: { UID: 0, GID: 0 },
    Args: args,
    Env: ["PATH=/bin", "TERM=xterm"],
    Cwd: "/",
    Capabilities: { Bounding: CAPS, Effective: CAPS, Permitted: CAPS, Inheritable: [], Ambient: [] },
    Rlimits: [{ Type: "RLIMIT_NOFILE", Hard: 1024n, Soft: 1024n }],
    NoNewPrivileges: true,
  };
}

export function containerSpec(
  rootfs: string,
  args: string[],
  options: {
    cgroupsPath: string;
    terminal?: boolean;
    pidNamespace?: boolean;
    mounts?: MessageInitShape<typeof SpecSchema>["Mounts"];
    namespaces?: { Type: string; Path: string }[];
  },
): MessageInitShape<typeof SpecSchema> {
  const namespaces = options.namespaces ?? ["ipc", "uts", "mount", "network", ...(options.pidNamespace === false ? [] : ["pid"])].map((t) => ({ Type: t, Path: "" }));
  return {
    Version: "1.0.2",
    Process: processSpec(args, { terminal: options.terminal ?? false }),
    Root: { Path: rootfs, Readonly: false },
    Hostname: "ctr",
    Mounts: [
      { destination: "/proc", type: "proc", source: "proc", options: [] },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
      ...(options.mounts ?? []),
    ],
    Annotations: { "io.kubernetes.cri-o.ContainerType": "container" },
    Linux: {
      Namespaces: namespaces,
      CgroupsPath: options.cgroupsPath,
      MaskedPaths: ["/proc/kcore", "/proc/keys"],
      ReadonlyPaths: ["/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

/** Reads a stream until end of file (or until `until` matches what was read). */
export async function readAll(
  client: TtrpcClient,
  which: "stdout" | "stderr",
  containerId: string,
  execId: string,
  until?: (text: string) => boolean,
): Promise<string> {
  const method = which === "stdout" ? AgentService.method.readStdout : AgentService.method.readStderr;
  let text = "";
  for (;;) {
    const r = await unary(client, method, { containerId, execId, len: 65536 });
    if (r.data.length === 0) return text;
    text += Buffer.from(r.data).toString();
    if (until?.(text)) return text;
  }
}

/** Asserts `promise` fails with a VmpodError of `kind`. */
export async function rejectsWith(promise: Promise<unknown>, kind: ErrorKind, message?: RegExp): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof VmpodError, `expected a VmpodError, got ${String(err)}`);
    assert.equal(err.kind, kind, `kind of: ${err.message}`);
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** True if `promise` is still pending after `ms` (it keeps running). */
export async function stillPending(promise: Promise<unknown>, ms: number): Promise<boolean> {
  const marker = Symbol("pending");
  const winner = await Promise.race([promise.then(() => undefined, () => undefined), new Promise((r) => setTimeout(() => r(marker), ms))]);
  return winner === marker;
}

export interface SandboxFixture {
  readonly agent: AgentHandle;
  readonly client: TtrpcClient;
  /** The sandbox's "local" storage: containers' root filesystems go below it. */
  readonly shared: string;
  /** Creates a container from a fresh busybox rootfs (not started). */
  createContainer(
    id: string,
    args: string[],
    options?: { terminal?: boolean; pidNamespace?: boolean; mounts?: MessageInitShape<typeof SpecSchema>["Mounts"]; execId?: string },
  ): Promise<string>;
  /** Destroys the sandbox, then stops the agent and checks nothing is left. */
  stop(failed: boolean): Promise<void>;
}

export async function startSandbox(): Promise<SandboxFixture> {
  const agent = await startAgent();
  const client = agent.client;
  const shared = join(agent.dir, "shared");
  try {
    await unary(client, AgentService.method.createSandbox, {
      sandboxId: "sandbox-1",
      hostname: "pod-1",
      dns: ["nameserver 10.0.0.1", "search example.test"],
      storages: [{ driver: "local", source: "", fstype: "", options: [], mountPoint: shared }],
    });
  } catch (err) {
    await agent.stop().catch(() => undefined);
    throw err;
  }
  let destroyed = false;
  return {
    agent,
    client,
    shared,
    async createContainer(id, args, options = {}) {
      const rootfs = join(shared, id, "rootfs");
      await makeBusyboxRootfs(rootfs);
      await unary(client, AgentService.method.createContainer, {
        containerId: id,
        execId: options.execId ?? "",
        OCI: containerSpec(rootfs, args, { cgroupsPath: `${agent.cgroupParent}/${id}`, ...options }),
      });
      return rootfs;
    },
    async stop(failed) {
      if (failed) process.stderr.write(`--- agent log ---\n${agent.log()}\n--- end of agent log ---\n`);
      try {
        if (!destroyed) {
          destroyed = true;
          await unary(client, AgentService.method.destroySandbox, {});
        }
      } finally {
        await agent.stop();
      }
    },
  };
}
