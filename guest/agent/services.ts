/**
 * The agent's ttRPC services: AgentService, Health and PortForward. This is
 * the edge where protobuf messages are translated; every handler is logged
 * here, and what it throws reaches the host as a status (VmpodError kinds;
 * anything else as Internal, logged with its stack).
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { readFile } from "node:fs/promises";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { kindOf, VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import type { CallContext, TtrpcServer } from "../../src/agent/ttrpc/server.js";
import { registerService, type ServiceImpl } from "../../src/agent/ttrpc/typed.js";
import {
  AgentService,
  Health,
  HealthCheckResponse_ServingStatus,
  PortForward,
  type CgroupStatsSchema,
  type Storage,
} from "../../src/gen/agent_pb.js";
import type { Agent } from "./agent.js";
import type { CgroupStats } from "./cgroups.js";
import { GuestNetwork } from "./network.js";
import { networkService } from "./network-service.js";
import { processToOci, resourcesToOci, specToOci } from "./oci-spec.js";
import { checkId } from "./spec-policy.js";
import { STORAGE_HANDLERS, type StorageSpec } from "./storage.js";

export const AGENT_VERSION = "0.1.0";

/** The most bytes one read returns (a ttRPC message is at most 4 MiB). */
const MAX_READ = 1 << 20;
const DEFAULT_READ = 32 * 1024;
/** Calls too frequent to log at info. */
const QUIET = new Set(["check", "readStdout", "readStderr", "writeStdin", "readPort", "writePort", "statsContainer", "waitProcess", "getOOMEvent"]);

export function registerAgentServices(server: TtrpcServer, agent: Agent): void {
  const log = agent.log;
  serve(server, log, Health, {
    async check() {
      return { status: HealthCheckResponse_ServingStatus.SERVING };
    },
    async version() {
      return { grpcVersion: "ttrpc", agentVersion: AGENT_VERSION };
    },
  });
  const network = new GuestNetwork({ open: async () => (await import("./network-socket.js")).openRtnl(), modulesReady: agent.options.modulesReady, log });
  serve(server, log, AgentService, { ...agentService(agent), ...networkService(network) });
  serve(server, log, PortForward, {
    async openPort(req, ctx) {
      agent.requireSandbox();
      return { connectionId: await agent.ports.open(req.port, ctx.signal) };
    },
    async readPort(req, ctx) {
      agent.requireSandbox();
      return { data: await agent.ports.read(req.connectionId, readLength(req.len), ctx.signal) };
    },
    async writePort(req) {
      agent.requireSandbox();
      return { len: await agent.ports.write(req.connectionId, req.data) };
    },
    async closePort(req) {
      agent.requireSandbox();
      agent.ports.close(req.connectionId);
      return {};
    },
  });
}

function agentService(agent: Agent): Partial<ServiceImpl<typeof AgentService.method>> {
  const container = (id: string) => agent.sandbox.container(id);
  return {
    async getGuestDetails(req) {
      return {
        memBlockSizeBytes: req.memBlockSize ? await memoryBlockSize() : 0n,
        supportMemHotplugProbe: false,
        agentDetails: {
          version: AGENT_VERSION,
          initDaemon: false,
          deviceHandlers: [],
          storageHandlers: [...STORAGE_HANDLERS],
          supportsSeccomp: true,
        },
      };
    },
    async createSandbox(req) {
      await agent.createSandbox({ id: req.sandboxId, hostname: req.hostname, dns: req.dns, storages: req.storages.map(storageOf) });
      return {};
    },
    async destroySandbox() {
      await agent.destroySandbox();
      return {};
    },
    async createContainer(req) {
      const sandbox = agent.sandbox;
      if (!req.OCI) throw new VmpodError("InvalidArgument", "CreateContainer without an OCI spec");
      await sandbox.createContainer({ id: req.containerId, execId: req.execId, storages: req.storages.map(storageOf), config: specToOci(req.OCI) });
      return {};
    },
    async startContainer(req) {
      await container(req.containerId).start();
      return {};
    },
    async removeContainer(req) {
      await agent.sandbox.removeContainer(req.containerId, req.timeout);
      return {};
    },
    async execProcess(req) {
      const c = container(req.containerId);
      checkId("exec id", req.execId);
      if (!req.process) throw new VmpodError("InvalidArgument", "ExecProcess without a process");
      const process = processToOci(req.process);
      if (process.args.length === 0) throw new VmpodError("InvalidArgument", "ExecProcess with no args");
      await c.exec(req.execId, process);
      return {};
    },
    async signalProcess(req) {
      container(req.containerId).signal(req.execId, req.signal);
      return {};
    },
    async waitProcess(req, ctx) {
      return { status: await container(req.containerId).wait(req.execId, ctx.signal) };
    },
    async updateContainer(req) {
      if (!req.resources) throw new VmpodError("InvalidArgument", "UpdateContainer without resources");
      await container(req.containerId).update(resourcesToOci(req.resources));
      return {};
    },
    async statsContainer(req) {
      return { cgroupStats: statsToProto(await container(req.containerId).stats()) };
    },
    async writeStdin(req) {
      const p = container(req.containerId).process(req.execId);
      return { len: await p.io.writeStdin(req.data) };
    },
    async readStdout(req, ctx) {
      const c = container(req.containerId);
      const data = await c.process(req.execId).io.stdout.read(readLength(req.len), ctx.signal);
      c.retire();
      return { data };
    },
    async readStderr(req, ctx) {
      const c = container(req.containerId);
      const data = await c.process(req.execId).io.stderr.read(readLength(req.len), ctx.signal);
      c.retire();
      return { data };
    },
    async closeStdin(req) {
      await container(req.containerId).process(req.execId).io.closeStdin();
      return {};
    },
    async ttyWinResize(req) {
      const p = container(req.containerId).process(req.execId);
      if (req.row > 0xffff || req.column > 0xffff) throw new VmpodError("InvalidArgument", `bad terminal size ${req.row}x${req.column}`);
      if (p.io.terminal && !p.running) return {};
      p.io.resize(req.row, req.column);
      return {};
    },
    async getOOMEvent(_req, ctx) {
      agent.requireSandbox();
      return { containerId: await agent.oom.next(ctx.signal) };
    },
    async setGuestDateTime(req) {
      if (req.Sec < 0n || req.Usec < 0n || req.Usec >= 1_000_000n) throw new VmpodError("InvalidArgument", `bad time ${req.Sec}.${req.Usec}`);
      (await agent.libc()).setRealtimeClock(req.Sec, Number(req.Usec) * 1000);
      return {};
    },
    async reseedRandomDev(req) {
      if (req.data.length === 0) return {};
      const libc = await agent.libc();
      // Opened, written and closed on the main thread: a character device that never blocks, and no
      // thread-pool round trips in the first call a restored VM answers.
      const fd = openSync("/dev/urandom", "w");
      try {
        try {
          // Mixes the bytes in and credits them as entropy.
          libc.addEntropy(fd, req.data);
        } catch (err) {
          agent.log.warn("RNDADDENTROPY refused; the bytes are mixed in without credit", { err });
          writeSync(fd, req.data);
        }
        // The CRNG keyed from the pool now, not at its next scheduled reseed: a failure fails the call,
        // since a restored VM would otherwise share its random stream with the template's other VMs.
        libc.reseedCrng(fd);
      } finally {
        closeSync(fd);
      }
      return {};
    },
  };
}

function storageOf(s: Storage): StorageSpec {
  return { driver: s.driver, source: s.source, fstype: s.fstype, options: s.options, mountPoint: s.mountPoint };
}

function readLength(len: number): number {
  return len === 0 ? DEFAULT_READ : Math.min(len, MAX_READ);
}

async function memoryBlockSize(): Promise<bigint> {
  const text = await readFile("/sys/devices/system/memory/block_size_bytes", "utf8").catch(() => "");
  return /^[0-9a-fA-F]+$/.test(text.trim()) ? BigInt(`0x${text.trim()}`) : 0n;
}

function statsToProto(s: CgroupStats): MessageInitShape<typeof CgroupStatsSchema> {
  return {
    cpuStats: {
      cpuUsage: { totalUsage: s.cpu.totalNs, percpuUsage: [], usageInKernelmode: s.cpu.systemNs, usageInUsermode: s.cpu.userNs },
      throttlingData: { periods: s.cpu.periods, throttledPeriods: s.cpu.throttledPeriods, throttledTime: s.cpu.throttledNs },
    },
    memoryStats: {
      cache: s.memory.stat["file"] ?? 0n,
      usage: { usage: s.memory.usage, maxUsage: s.memory.maxUsage, failcnt: s.memory.failcnt, limit: s.memory.limit },
      swapUsage: { usage: s.memory.swapUsage, limit: s.memory.swapLimit },
      useHierarchy: true,
      stats: { ...s.memory.stat },
    },
    pidsStats: { current: s.pids.current, limit: s.pids.limit },
  };
}

/**
 * Registers `impl`, logging every call: successes at debug (the log is the
 * serial console, slow under TCG), failures with their kind, unexpected ones
 * with their stack.
 */
function serve<S extends GenServiceMethods>(server: TtrpcServer, log: Logger, service: GenService<S>, impl: Partial<ServiceImpl<S>>): void {
  const out: Record<string, (req: unknown, ctx: CallContext) => Promise<unknown>> = {};
  for (const [name, handler] of Object.entries(impl as Record<string, (req: unknown, ctx: CallContext) => Promise<unknown>>)) {
    out[name] = async (req, ctx) => {
      const start = performance.now();
      try {
        const result = await handler(req, ctx);
        if (!QUIET.has(name)) log.debug("rpc", { method: name, ms: Math.round(performance.now() - start) });
        return result;
      } catch (err) {
        const kind = kindOf(err);
        const ms = Math.round(performance.now() - start);
        if (kind === undefined) log.error("rpc failed unexpectedly", { method: name, ms, err, stack: err instanceof Error ? err.stack : undefined });
        else if (kind !== "Canceled") log.info("rpc failed", { method: name, ms, kind, err });
        throw err;
      }
    };
  }
  registerService(server, service, out as Partial<ServiceImpl<S>>);
}
