/**
 * Fakes at the network layer's boundaries: plugin binaries (a bridge-like
 * plugin with its own address book, a portmap-like one with its own rules)
 * and the host (netns, links, taps, redirects, descriptors), each able to
 * fail at a chosen step, and all keeping state a test can check is empty.
 */
import { basename } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import type { PluginCall, PluginExec, PluginOutput } from "../../../src/network/cni-exec.js";
import type { NetworkHost } from "../../../src/network/network-host.js";
import type { LinkInfo } from "../../../src/network/links.js";

export interface RecordedCall {
  readonly type: string;
  readonly command: string;
  readonly env: Readonly<Record<string, string>>;
  readonly conf: Record<string, unknown>;
}

type Handler = (call: PluginCall, conf: Record<string, unknown>) => PluginOutput | Promise<PluginOutput>;

const ok = (doc: unknown): PluginOutput => ({ exitCode: 0, stdout: JSON.stringify(doc), stderr: "" });
export const cniError = (code: number, msg: string, details?: string): PluginOutput => ({
  exitCode: 1,
  stdout: JSON.stringify({ cniVersion: "1.0.0", code, msg, ...(details ? { details } : {}) }),
  stderr: "",
});

export class FakeHost implements NetworkHost {
  readonly netns = new Set<string>();
  readonly links = new Map<string, Map<string, LinkInfo>>();
  readonly redirects = new Set<string>();
  readonly openFds = new Set<number>();
  /** Methods that fail when called. */
  readonly failing = new Set<keyof NetworkHost>();
  private nextFd = 100;
  private nextIndex = 10;

  addLink(ns: string, name: string, mac: string, mtu = 1500): void {
    this.links.get(ns)?.set(name, { name, index: this.nextIndex++, mac, mtu });
  }

  isClean(): boolean {
    return this.netns.size === 0 && this.redirects.size === 0 && this.openFds.size === 0;
  }

  private check(step: keyof NetworkHost): void {
    if (this.failing.has(step)) throw new VmpodError("Internal", `fake host: ${step} failed`);
  }

  async createNetns(name: string): Promise<string> {
    this.check("createNetns");
    if (this.netns.has(name)) throw new VmpodError("AlreadyExists", `netns ${name} exists`);
    this.netns.add(name);
    this.links.set(name, new Map());
    this.addLink(name, "lo", "00:00:00:00:00:00", 65536);
    return `/run/netns/${name}`;
  }
  async removeNetns(name: string): Promise<void> {
    this.check("removeNetns");
    this.netns.delete(name);
    this.links.delete(name);
    for (const r of this.redirects) if (r.startsWith(`${name} `)) this.redirects.delete(r);
  }
  async netnsExists(name: string): Promise<boolean> {
    return this.netns.has(name);
  }
  async readLink(ns: string, name: string): Promise<LinkInfo | undefined> {
    this.check("readLink");
    return this.links.get(ns)?.get(name);
  }
  async openTap(ns: string, name: string, mtu: number): Promise<number> {
    this.check("openTap");
    if (!this.netns.has(ns)) throw new VmpodError("NotFound", `no netns ${ns}`);
    this.addLink(ns, name, "02:00:00:00:00:aa", mtu);
    const fd = this.nextFd++;
    this.openFds.add(fd);
    return fd;
  }
  async openMacvtap(ns: string, lower: string, name: string): Promise<number> {
    this.check("openMacvtap");
    const l = this.links.get(ns)?.get(lower);
    if (!l) throw new VmpodError("NotFound", `no ${lower}`);
    this.addLink(ns, name, l.mac, l.mtu);
    const fd = this.nextFd++;
    this.openFds.add(fd);
    return fd;
  }
  async deleteLink(ns: string, name: string): Promise<void> {
    this.check("deleteLink");
    this.links.get(ns)?.delete(name);
  }
  async addRedirect(ns: string, a: string, b: string): Promise<void> {
    // Like the real one, it may fail halfway: the first direction is in place.
    this.redirects.add(`${ns} ${a}>${b}`);
    this.check("addRedirect");
    this.redirects.add(`${ns} ${b}>${a}`);
  }
  async removeRedirect(ns: string, a: string, b: string): Promise<void> {
    this.check("removeRedirect");
    this.redirects.delete(`${ns} ${a}>${b}`);
    this.redirects.delete(`${ns} ${b}>${a}`);
  }
  closeFd(fd: number): void {
    this.openFds.delete(fd);
  }
}

/**
 * Plugin binaries. `bridge` puts eth0 into the netns and takes an address
 * from its book; `portmap` keeps rules per container; both undo on DEL.
 */
export class FakePlugins implements PluginExec {
  readonly calls: RecordedCall[] = [];
  /** container id → address */
  readonly addresses = new Map<string, string>();
  /** container id → port mappings */
  readonly rules = new Map<string, unknown>();
  /** "type COMMAND" → replacement handler (failures, hangs). */
  readonly overrides = new Map<string, Handler>();
  readonly versions = new Map<string, string[]>();
  readonly handlers = new Map<string, Handler>();
  private nextHost = 2;

  constructor(private readonly host: FakeHost) {
    this.handlers.set("bridge", (call) => this.bridge(call));
    this.handlers.set("portmap", (call, conf) => this.portmap(call, conf));
  }

  isClean(): boolean {
    return this.addresses.size === 0 && this.rules.size === 0;
  }

  commands(): string[] {
    return this.calls.filter((c) => c.command !== "VERSION").map((c) => `${c.type} ${c.command}`);
  }

  async find(type: string, dirs: readonly string[]): Promise<string | undefined> {
    return this.handlers.has(type) ? `${dirs[0] ?? "/bin"}/${type}` : undefined;
  }

  async exec(call: PluginCall): Promise<PluginOutput> {
    const command = call.env.CNI_COMMAND ?? "";
    const conf = JSON.parse(call.stdin) as Record<string, unknown>;
    this.calls.push({ type: call.type, command, env: call.env, conf });
    const override = this.overrides.get(`${call.type} ${command}`);
    if (override) return override(call, conf);
    if (command === "VERSION") return ok({ cniVersion: conf.cniVersion, supportedVersions: this.versions.get(call.type) ?? ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] });
    const handler = this.handlers.get(call.type);
    if (!handler) return cniError(100, `no fake plugin ${call.type}`);
    return handler(call, conf);
  }

  private bridge(call: PluginCall): PluginOutput {
    const id = call.env.CNI_CONTAINERID ?? "";
    const netns = call.env.CNI_NETNS ?? "";
    const ns = basename(netns);
    if (call.env.CNI_COMMAND === "ADD") {
      if (!this.host.netns.has(ns)) return cniError(3, `no netns ${netns}`);
      const address = this.addresses.get(id) ?? `10.251.0.${this.nextHost++}`;
      this.addresses.set(id, address);
      const mac = `0a:58:0a:fb:00:${address.split(".")[3]?.padStart(2, "0") ?? "00"}`;
      this.host.addLink(ns, call.env.CNI_IFNAME ?? "eth0", mac, 1450);
      return ok({
        cniVersion: "1.0.0",
        interfaces: [{ name: "vmpt0", mac: "0a:58:0a:fb:00:01" }, { name: "vethx", mac: "fe:00:00:00:00:01" }, { name: call.env.CNI_IFNAME, mac, sandbox: netns }],
        ips: [{ interface: 2, address: `${address}/24`, gateway: "10.251.0.1" }],
        routes: [{ dst: "0.0.0.0/0" }],
        dns: {},
      });
    }
    if (call.env.CNI_COMMAND === "DEL") {
      this.addresses.delete(id);
      if (netns !== "") this.host.links.get(ns)?.delete(call.env.CNI_IFNAME ?? "eth0");
      return { exitCode: 0, stdout: "", stderr: "" };
    }
    return { exitCode: 0, stdout: "", stderr: "" };
  }

  private portmap(call: PluginCall, conf: Record<string, unknown>): PluginOutput {
    const id = call.env.CNI_CONTAINERID ?? "";
    if (call.env.CNI_COMMAND === "ADD") {
      if (conf.prevResult === undefined) return cniError(7, "portmap needs a prevResult");
      const rc = conf.runtimeConfig as { portMappings?: unknown } | undefined;
      this.rules.set(id, rc?.portMappings ?? []);
      return ok(conf.prevResult);
    }
    if (call.env.CNI_COMMAND === "DEL") this.rules.delete(id);
    return { exitCode: 0, stdout: "", stderr: "" };
  }
}
