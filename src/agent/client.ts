/**
 * The agent's RPCs in domain terms. One AgentClient per VM, over one ttRPC
 * connection. Ordinary calls carry the configured deadline; calls that wait
 * for the guest (stream reads, process waits, OOM events) carry none and
 * end through their abort signal or the connection's end.
 */
import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { wrap } from "../common/errors.js";
import type { OciProcess, OciResources, OciSpec } from "../common/oci-spec.js";
import { AgentService, Health, HealthCheckResponse_ServingStatus, PortForward } from "../gen/agent_pb.js";
import type { TtrpcClient } from "./ttrpc/client.js";
import { unary, type UnaryMethod } from "./ttrpc/typed.js";
import type { InterfaceConfig, InterfaceStatus, RouteConfig } from "./network-types.js";
import {
  interfaceFromProto,
  interfaceToProto,
  processToProto,
  resourcesToProto,
  routeFromProto,
  routeToProto,
  specToProto,
  statsFromProto,
  storageToProto,
  type ContainerStats,
  type Storage,
} from "./translate.js";

export interface AgentCallOptions {
  readonly signal?: AbortSignal;
  /** Overrides the default deadline; `null` waits as long as it takes. */
  readonly timeoutMs?: number | null;
}

export interface GuestDetails {
  readonly agentVersion: string;
  readonly storageHandlers: readonly string[];
}

export type StdStream = "stdout" | "stderr";

export class AgentClient {
  constructor(
    private readonly ttrpc: TtrpcClient,
    private readonly callTimeoutMs: number,
  ) {}

  /** Resolves when the connection to the agent ends (VM gone, agent died, closed). */
  get done(): Promise<void> {
    return this.ttrpc.done;
  }

  get isClosed(): boolean {
    return this.ttrpc.isClosed;
  }

  close(): void {
    this.ttrpc.close();
  }

  destroy(reason: Error): void {
    this.ttrpc.destroy(reason);
  }

  async check(options?: AgentCallOptions): Promise<boolean> {
    const r = await this.call(Health.method.check, {}, options);
    return r.status === HealthCheckResponse_ServingStatus.SERVING;
  }

  async guestDetails(options?: AgentCallOptions): Promise<GuestDetails> {
    const r = await this.call(AgentService.method.getGuestDetails, {}, options);
    return { agentVersion: r.agentDetails?.version ?? "", storageHandlers: r.agentDetails?.storageHandlers ?? [] };
  }

  async createSandbox(req: { sandboxId: string; hostname: string; dns: readonly string[]; storages: readonly Storage[] }, options?: AgentCallOptions): Promise<void> {
    await this.call(
      AgentService.method.createSandbox,
      { sandboxId: req.sandboxId, hostname: req.hostname, dns: [...req.dns], storages: req.storages.map(storageToProto) },
      options,
    );
  }

  async destroySandbox(options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.destroySandbox, {}, options);
  }

  async createContainer(req: { containerId: string; execId?: string; storages?: readonly Storage[]; spec: OciSpec }, options?: AgentCallOptions): Promise<void> {
    await this.call(
      AgentService.method.createContainer,
      { containerId: req.containerId, execId: req.execId ?? "", storages: (req.storages ?? []).map(storageToProto), OCI: specToProto(req.spec) },
      options,
    );
  }

  async startContainer(containerId: string, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.startContainer, { containerId }, options);
  }

  /** Kills what is left of the container (after `timeoutSec`, 0 = wait) and removes it. */
  async removeContainer(containerId: string, timeoutSec: number, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.removeContainer, { containerId, timeout: timeoutSec }, options);
  }

  async execProcess(containerId: string, execId: string, process: OciProcess, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.execProcess, { containerId, execId, process: processToProto(process) }, options);
  }

  /** `execId` empty: the container's first process (and with it the container). */
  async signalProcess(containerId: string, execId: string, signal: number, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.signalProcess, { containerId, execId, signal }, options);
  }

  /** The exit status: the exit code, or 128 + signal. Waits as long as it takes. */
  async waitProcess(containerId: string, execId: string, options?: AgentCallOptions): Promise<number> {
    const r = await this.call(AgentService.method.waitProcess, { containerId, execId }, { timeoutMs: null, ...options });
    return r.status;
  }

  /** Up to `len` bytes, as soon as there are any; empty at end of stream. Waits as long as it takes. */
  async read(stream: StdStream, containerId: string, execId: string, len: number, options?: AgentCallOptions): Promise<Uint8Array> {
    const method = stream === "stdout" ? AgentService.method.readStdout : AgentService.method.readStderr;
    const r = await this.call(method, { containerId, execId, len }, { timeoutMs: null, ...options });
    return r.data;
  }

  async writeStdin(containerId: string, execId: string, data: Uint8Array, options?: AgentCallOptions): Promise<number> {
    const r = await this.call(AgentService.method.writeStdin, { containerId, execId, data }, { timeoutMs: null, ...options });
    return r.len;
  }

  async closeStdin(containerId: string, execId: string, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.closeStdin, { containerId, execId }, options);
  }

  async ttyWinResize(containerId: string, execId: string, rows: number, columns: number, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.ttyWinResize, { containerId, execId, row: rows, column: columns }, options);
  }

  async updateContainer(containerId: string, resources: OciResources, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.updateContainer, { containerId, resources: resourcesToProto(resources) }, options);
  }

  async statsContainer(containerId: string, options?: AgentCallOptions): Promise<ContainerStats> {
    return statsFromProto(await this.call(AgentService.method.statsContainer, { containerId }, options));
  }

  /** Waits for the next container killed for lack of memory; returns its id. */
  async nextOomEvent(options?: AgentCallOptions): Promise<string> {
    const r = await this.call(AgentService.method.getOOMEvent, {}, { timeoutMs: null, ...options });
    return r.containerId;
  }

  async setGuestDateTime(when: Date, options?: AgentCallOptions): Promise<void> {
    const ms = when.getTime();
    await this.call(AgentService.method.setGuestDateTime, { Sec: BigInt(Math.floor(ms / 1000)), Usec: BigInt((ms % 1000) * 1000) }, options);
  }

  async reseedRandomDev(data: Uint8Array, options?: AgentCallOptions): Promise<void> {
    await this.call(AgentService.method.reseedRandomDev, { data }, options);
  }

  /**
   * Gives the guest's link with `nic.mac` its name, MTU and addresses (the
   * others it had go, but IPv6 link-local ones) and brings it up; returns it
   * as it now is. Needs no sandbox. The guest waits for the NIC's driver
   * for a while after boot; an unknown MAC is NotFound, a malformed value
   * InvalidArgument.
   */
  async updateInterface(nic: InterfaceConfig, options?: AgentCallOptions): Promise<InterfaceStatus> {
    const r = await this.call(AgentService.method.updateInterface, { interface: interfaceToProto(nic) }, options);
    return interfaceFromProto(r);
  }

  /**
   * Makes `routes` the guest's routes (besides the kernel's own and
   * loopback's), on-link ones first; returns them as applied. A device the
   * guest has not is NotFound; a gateway it cannot reach FailedPrecondition,
   * with the old routes left in place.
   */
  async updateRoutes(routes: readonly RouteConfig[], options?: AgentCallOptions): Promise<RouteConfig[]> {
    const r = await this.call(AgentService.method.updateRoutes, { routes: { Routes: routes.map(routeToProto) } }, options);
    return r.Routes.map(routeFromProto);
  }

  async listInterfaces(options?: AgentCallOptions): Promise<InterfaceStatus[]> {
    return (await this.call(AgentService.method.listInterfaces, {}, options)).Interfaces.map(interfaceFromProto);
  }

  /** The guest's main-table routes of both families, the kernel's own included, but loopback's. */
  async listRoutes(options?: AgentCallOptions): Promise<RouteConfig[]> {
    return (await this.call(AgentService.method.listRoutes, {}, options)).Routes.map(routeFromProto);
  }

  /** Opens a TCP connection to `port` on the guest's loopback; returns its id. */
  async openPort(port: number, options?: AgentCallOptions): Promise<string> {
    return (await this.call(PortForward.method.openPort, { port }, options)).connectionId;
  }

  async readPort(connectionId: string, len: number, options?: AgentCallOptions): Promise<Uint8Array> {
    return (await this.call(PortForward.method.readPort, { connectionId, len }, { timeoutMs: null, ...options })).data;
  }

  async writePort(connectionId: string, data: Uint8Array, options?: AgentCallOptions): Promise<number> {
    return (await this.call(PortForward.method.writePort, { connectionId, data }, { timeoutMs: null, ...options })).len;
  }

  async closePort(connectionId: string, options?: AgentCallOptions): Promise<void> {
    await this.call(PortForward.method.closePort, { connectionId }, options);
  }

  private async call<I extends DescMessage, O extends DescMessage>(
    method: UnaryMethod<I, O>,
    request: MessageInitShape<I>,
    options: AgentCallOptions = {},
  ): Promise<MessageShape<O>> {
    const timeoutMs = options.timeoutMs === undefined ? this.callTimeoutMs : options.timeoutMs;
    try {
      return await unary(this.ttrpc, method, request, {
        ...(timeoutMs === null ? {} : { timeoutMs }),
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (err) {
      throw wrap(`agent ${method.name}`, err);
    }
  }
}
