/**
 * Fakes at the installer's interfaces: a systemd that records the calls
 * (and can start a daemon), a Kubernetes API in memory, and a CRI daemon
 * answering Status and ListPodSandbox on a real unix socket, which the
 * installer's real CRI client talks to.
 */
import { mkdir, rm } from "node:fs/promises";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { VmpodError } from "../../../src/common/errors.js";
import { ListPodSandboxResponseSchema, RuntimeService, StatusResponseSchema } from "../../../src/gen/cri/api_pb.js";
import { serviceDefinition } from "../../../src/cri/grpc.js";
import type { HostCommands } from "../../../src/installer/host-commands.js";
import type { KubeApi, NodeFacts, RuntimeClassObject } from "../../../src/installer/kube-api.js";

/** A CRI daemon that answers Status (RuntimeReady as set) and ListPodSandbox (the pods as set). */
export class FakeCriDaemon {
  ready = true;
  pods: string[] = [];
  private server: grpc.Server | undefined;

  constructor(readonly socket: string) {}

  get running(): boolean {
    return this.server !== undefined;
  }

  async start(): Promise<void> {
    if (this.server) return;
    await mkdir(dirname(this.socket), { recursive: true });
    await rm(this.socket, { force: true });
    const server = new grpc.Server();
    server.addService(serviceDefinition(RuntimeService), {
      status: (_call: unknown, done: grpc.sendUnaryData<unknown>) =>
        done(null, create(StatusResponseSchema, { status: { conditions: [{ type: "RuntimeReady", status: this.ready, reason: this.ready ? "" : "FakeNotReady", message: this.ready ? "" : "not yet" }] } })),
      listPodSandbox: (_call: unknown, done: grpc.sendUnaryData<unknown>) => done(null, create(ListPodSandboxResponseSchema, { items: this.pods.map((id) => ({ id })) })),
    });
    await new Promise<void>((resolve, reject) => server.bindAsync(`unix:${this.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
    this.server = server;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.tryShutdown(() => resolve()));
  }
}

/**
 * systemd as the installer sees it: records every systemctl call; starting
 * or restarting vmpod starts the daemon, stopping it stops it. A call can be
 * made to fail.
 */
export class FakeSystemd implements HostCommands {
  readonly calls: string[] = [];
  failOn: string | undefined;

  constructor(private readonly daemon?: FakeCriDaemon) {}

  async systemctl(args: readonly string[]): Promise<void> {
    const call = args.join(" ");
    this.calls.push(call);
    if (call === this.failOn) throw new VmpodError("Internal", `systemctl ${call} failed (exit 1)`);
    if (!this.daemon) return;
    if (call === "enable --now vmpod.service" || call === "restart vmpod.service" || call === "start vmpod.service") {
      if (call === "restart vmpod.service") await this.daemon.stop();
      await this.daemon.start();
    }
    if (call === "disable --now vmpod.service" || call === "stop vmpod.service") await this.daemon.stop();
  }
}

/** A cluster in memory: nodes (labels, reported runtime) and RuntimeClasses, with every write recorded. */
export class FakeKubeApi implements KubeApi {
  readonly nodes = new Map<string, { labels: Record<string, string>; containerRuntimeVersion: string }>();
  readonly runtimeClasses = new Map<string, RuntimeClassObject>();
  readonly writes: string[] = [];

  addNode(name: string, containerRuntimeVersion: string, labels: Record<string, string> = {}): void {
    this.nodes.set(name, { labels: { ...labels }, containerRuntimeVersion });
  }

  async getNode(name: string): Promise<NodeFacts> {
    const n = this.nodes.get(name);
    if (!n) throw new VmpodError("NotFound", `node ${name} not found`);
    return { name, labels: { ...n.labels }, containerRuntimeVersion: n.containerRuntimeVersion };
  }

  async patchNodeLabels(name: string, labels: Readonly<Record<string, string | null>>): Promise<void> {
    const n = this.nodes.get(name);
    if (!n) throw new VmpodError("NotFound", `node ${name} not found`);
    for (const [k, v] of Object.entries(labels)) {
      if (v === null) delete n.labels[k];
      else n.labels[k] = v;
    }
    this.writes.push(`patch node ${name} ${JSON.stringify(labels)}`);
  }

  async listNodeNames(labelSelector: string): Promise<string[]> {
    const [key, value] = labelSelector.split("=") as [string, string];
    return [...this.nodes].filter(([, n]) => n.labels[key] === value).map(([name]) => name);
  }

  async getRuntimeClass(name: string): Promise<RuntimeClassObject | undefined> {
    return this.runtimeClasses.get(name);
  }

  async createRuntimeClass(rc: RuntimeClassObject): Promise<void> {
    if (this.runtimeClasses.has(rc.metadata.name)) throw new VmpodError("AlreadyExists", `RuntimeClass ${rc.metadata.name} exists`);
    this.runtimeClasses.set(rc.metadata.name, structuredClone(rc));
    this.writes.push(`create RuntimeClass ${rc.metadata.name}`);
  }

  async deleteRuntimeClass(name: string): Promise<void> {
    this.runtimeClasses.delete(name);
    this.writes.push(`delete RuntimeClass ${name}`);
  }
}
