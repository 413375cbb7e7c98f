/**
 * configuration.toml → Config. TOML is parsed to `unknown`, each known key is
 * checked and converted, defaults fill the rest, unknown keys are reported as
 * warnings. Errors name the file and the key.
 */
import { readFile } from "node:fs/promises";
import { parse } from "smol-toml";
import { VmpodError, messageOf } from "../common/errors.js";
import { defaultConfig } from "./defaults.js";
import type { Acceleration, BlockDeviceDriver, Config, HandlerConfig, InterNetworkingModel, MachineType, RegistryHostConfig, SharedFs } from "./types.js";

export interface Loaded {
  readonly config: Config;
  readonly warnings: readonly string[];
}

type Table = Record<string, unknown>;

export async function loadConfigFile(path: string, assetDir: string): Promise<Loaded> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    throw new VmpodError("InvalidArgument", `read configuration ${path}`, { cause: err });
  }
  return parseConfig(text, path, assetDir);
}

export function parseConfig(text: string, source: string, assetDir: string): Loaded {
  let doc: Table;
  try {
    doc = parse(text) as Table;
  } catch (err) {
    throw new VmpodError("InvalidArgument", `${source}: ${messageOf(err)}`);
  }
  const reader = new Reader(source, doc);
  const d = defaultConfig(assetDir);
  const config: Config = {
    hypervisor: {
      path: reader.str("hypervisor.qemu.path", d.hypervisor.path),
      kernel: reader.str("hypervisor.qemu.kernel", d.hypervisor.kernel),
      initrd: reader.str("hypervisor.qemu.initrd", d.hypervisor.initrd),
      image: reader.str("hypervisor.qemu.image", d.hypervisor.image),
      machineType: reader.oneOf<MachineType>("hypervisor.qemu.machine_type", ["microvm", "q35"], d.hypervisor.machineType),
      kernelParams: reader.words("hypervisor.qemu.kernel_params", d.hypervisor.kernelParams),
      defaultVcpus: reader.int("hypervisor.qemu.default_vcpus", d.hypervisor.defaultVcpus, 1, 256),
      defaultMemory: reader.int("hypervisor.qemu.default_memory", d.hypervisor.defaultMemory, 128, 1 << 20),
      accel: reader.oneOf<Acceleration>("hypervisor.qemu.accel", ["auto", "kvm", "tcg"], d.hypervisor.accel),
      sharedFs: reader.oneOf<SharedFs>("hypervisor.qemu.shared_fs", ["virtio-fs", "none"], d.hypervisor.sharedFs),
      virtioFsDaemon: reader.str("hypervisor.qemu.virtio_fs_daemon", d.hypervisor.virtioFsDaemon),
      blockDeviceDriver: reader.oneOf<BlockDeviceDriver>("hypervisor.qemu.block_device_driver", ["virtio-scsi", "virtio-blk"], d.hypervisor.blockDeviceDriver),
      disableBlockDeviceUse: reader.bool("hypervisor.qemu.disable_block_device_use", d.hypervisor.disableBlockDeviceUse),
    },
    agent: {
      dialTimeoutMs: reader.int("agent.kata.dial_timeout", d.agent.dialTimeoutMs / 1000, 1, 3600) * 1000,
      callTimeoutMs: reader.int("agent.kata.call_timeout", d.agent.callTimeoutMs / 1000, 1, 3600) * 1000,
    },
    runtime: {
      stateRoot: reader.str("runtime.state_root", d.runtime.stateRoot),
      logLevel: reader.oneOf("runtime.log_level", ["debug", "info", "warn", "error"], d.runtime.logLevel),
      enableDebug: reader.bool("runtime.enable_debug", d.runtime.enableDebug),
      defaultHandler: reader.str("runtime.default_handler", d.runtime.defaultHandler),
      handlers: reader.handlers("runtime.handlers", d.runtime.handlers),
    },
    cri: {
      socket: reader.str("cri.socket", d.cri.socket),
      streamAddress: reader.str("cri.stream_address", d.cri.streamAddress),
      streamTokenTtlMs: reader.int("cri.stream_token_ttl", d.cri.streamTokenTtlMs / 1000, 1, 3600) * 1000,
    },
    image: {
      root: reader.str("image.root", d.image.root),
      platform: reader.platform("image.platform", d.image.platform),
      maxConcurrentDownloads: reader.int("image.max_concurrent_downloads", d.image.maxConcurrentDownloads, 1, 64),
      sandboxImage: reader.str("image.sandbox_image", d.image.sandboxImage),
      registries: reader.registries("registries"),
    },
    network: {
      confDir: reader.str("cni.conf_dir", d.network.confDir),
      binDirs: reader.paths("cni.bin_dirs", d.network.binDirs),
      cacheDir: reader.str("cni.cache_dir", d.network.cacheDir),
      pluginTimeoutMs: reader.int("cni.plugin_timeout", d.network.pluginTimeoutMs / 1000, 1, 3600) * 1000,
      interNetworkingModel: reader.oneOf<InterNetworkingModel>("runtime.internetworking_model", ["tcfilter", "macvtap"], d.network.interNetworkingModel),
    },
    metrics: {
      enable: reader.bool("metrics.enable", d.metrics.enable),
      address: reader.str("metrics.address", d.metrics.address),
    },
  };
  if (!(config.runtime.defaultHandler in config.runtime.handlers)) {
    throw new VmpodError("InvalidArgument", `${source}: runtime.default_handler = ${JSON.stringify(config.runtime.defaultHandler)} is not among runtime.handlers (${Object.keys(config.runtime.handlers).join(", ")})`);
  }
  if (!/^[^:]+:\d+$/.test(config.metrics.address)) throw new VmpodError("InvalidArgument", `${source}: metrics.address must be host:port, not ${JSON.stringify(config.metrics.address)}`);
  if (!/^[^:]+:\d+$/.test(config.cri.streamAddress)) throw new VmpodError("InvalidArgument", `${source}: cri.stream_address must be host:port, not ${JSON.stringify(config.cri.streamAddress)}`);
  if (!config.hypervisor.disableBlockDeviceUse && config.hypervisor.blockDeviceDriver === "virtio-blk") {
    // microvm has no PCI hot-plug at all; on q35 adding layers on PCI root ports is not built yet.
    throw new VmpodError(
      "InvalidArgument",
      `${source}: hypervisor.qemu.block_device_driver = "virtio-blk" cannot add image layers to a running VM yet; use "virtio-scsi" with disable_block_device_use = false`,
    );
  }
  return { config, warnings: reader.unknownKeys() };
}

class Reader {
  private readonly used = new Set<string>();
  private readonly extraWarnings: string[] = [];

  constructor(
    private readonly source: string,
    private readonly doc: Table,
  ) {}

  str(key: string, fallback: string): string {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || v === "") throw this.bad(key, "a non-empty string", v);
    return v;
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const v = this.get(key);
    if (v === undefined) return fallback;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n)) throw this.bad(key, "an integer", v);
    if (n < min || n > max) throw new VmpodError("InvalidArgument", `${this.source}: ${key} = ${n} is out of range [${min}, ${max}]`);
    return n;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) throw this.bad(key, `one of ${allowed.join(", ")}`, v);
    return v as T;
  }

  /** A string of space-separated words, or an array of strings. */
  words(key: string, fallback: readonly string[]): readonly string[] {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v === "string") return v.split(/\s+/).filter((w) => w !== "");
    if (Array.isArray(v) && v.every((w) => typeof w === "string")) return v as string[];
    throw this.bad(key, "a string or an array of strings", v);
  }

  /** A non-empty array of absolute paths. */
  paths(key: string, fallback: readonly string[]): readonly string[] {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (!Array.isArray(v) || v.length === 0 || !v.every((p) => typeof p === "string" && p.startsWith("/"))) throw this.bad(key, "a non-empty array of absolute paths", v);
    return v as string[];
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.get(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw this.bad(key, "true or false", v);
    return v;
  }

  /** "os/arch" or "os/arch/variant". */
  platform(key: string, fallback: string): string {
    const v = this.str(key, fallback);
    if (!/^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_]+)?$/.test(v)) throw this.bad(key, "os/architecture[/variant]", v);
    return v;
  }

  /** `[registries."HOST"]` tables; host names hold dots, so they are read as tables, not dotted keys. */
  registries(key: string): Record<string, RegistryHostConfig> {
    const section = this.get(key);
    if (section === undefined) return {};
    if (section === null || typeof section !== "object" || Array.isArray(section)) throw this.bad(key, "a table of registry hosts", section);
    const out: Record<string, RegistryHostConfig> = {};
    for (const [host, value] of Object.entries(section as Table)) {
      const where = `${key}."${host}"`;
      if (!/^[A-Za-z0-9.-]+(:[0-9]+)?$/.test(host)) throw new VmpodError("InvalidArgument", `${this.source}: ${where} is not a registry host[:port]`);
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw this.bad(where, "a table", value);
      const t = value as Table;
      for (const k of Object.keys(t)) {
        if (!["mirrors", "plain_http", "insecure_skip_verify", "ca_files"].includes(k)) this.extraWarnings.push(`${this.source}: unknown key ${where}.${k}`);
      }
      const list = (k: string): string[] => {
        const v = t[k];
        if (v === undefined) return [];
        if (!Array.isArray(v) || !v.every((s) => typeof s === "string" && s !== "")) throw this.bad(`${where}.${k}`, "an array of strings", v);
        return v as string[];
      };
      const flag = (k: string): boolean | undefined => {
        const v = t[k];
        if (v === undefined) return undefined;
        if (typeof v !== "boolean") throw this.bad(`${where}.${k}`, "true or false", v);
        return v;
      };
      const mirrors = list("mirrors");
      for (const m of mirrors) {
        let url: URL;
        try {
          url = new URL(m);
        } catch {
          throw this.bad(`${where}.mirrors`, "URLs such as https://mirror.example:5000", m);
        }
        if (url.protocol !== "http:" && url.protocol !== "https:") throw this.bad(`${where}.mirrors`, "http:// or https:// URLs", m);
      }
      const plainHttp = flag("plain_http");
      out[host] = { mirrors, ...(plainHttp === undefined ? {} : { plainHttp }), insecureSkipVerify: flag("insecure_skip_verify") ?? false, caFiles: list("ca_files") };
    }
    return out;
  }

  /** `[runtime.handlers.NAME] type = "vm" | "oci", runtime_path = "..."`; replaces the defaults when given. */
  handlers(key: string, fallback: Readonly<Record<string, HandlerConfig>>): Record<string, HandlerConfig> {
    const section = this.get(key);
    if (section === undefined) return { ...fallback };
    if (section === null || typeof section !== "object" || Array.isArray(section)) throw this.bad(key, "a table of handlers", section);
    const out: Record<string, HandlerConfig> = {};
    for (const [name, value] of Object.entries(section as Table)) {
      const where = `${key}.${name}`;
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw new VmpodError("InvalidArgument", `${this.source}: ${where}: a handler name is a DNS label, as RuntimeClass requires`);
      if (value === null || typeof value !== "object" || Array.isArray(value)) throw this.bad(where, "a table", value);
      const t = value as Table;
      for (const k of Object.keys(t)) if (!["type", "runtime_path"].includes(k)) this.extraWarnings.push(`${this.source}: unknown key ${where}.${k}`);
      if (t.type === "vm") out[name] = { type: "vm" };
      else if (t.type === "oci") {
        if (typeof t.runtime_path !== "string" || t.runtime_path === "") throw this.bad(`${where}.runtime_path`, "the path of an OCI runtime binary (runc, crun)", t.runtime_path);
        out[name] = { type: "oci", runtimePath: t.runtime_path };
      } else throw this.bad(`${where}.type`, `"vm" or "oci"`, t.type);
    }
    return out;
  }

  unknownKeys(): string[] {
    const warnings: string[] = [];
    const walk = (table: Table, prefix: string) => {
      for (const [k, v] of Object.entries(table)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (this.used.has(key)) continue;
        if (v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date)) walk(v as Table, key);
        else warnings.push(`${this.source}: unknown key ${key}`);
      }
    };
    walk(this.doc, "");
    return [...warnings, ...this.extraWarnings];
  }

  private get(key: string): unknown {
    this.used.add(key);
    let node: unknown = this.doc;
    for (const part of key.split(".")) {
      if (node === null || typeof node !== "object") return undefined;
      node = (node as Table)[part];
    }
    return node;
  }

  private bad(key: string, expected: string, got: unknown): VmpodError {
    return new VmpodError("InvalidArgument", `${this.source}: ${key} must be ${expected}, not ${JSON.stringify(typeof got === "bigint" ? Number(got) : got)}`);
  }
}
