/**
 * configuration.toml → Config. TOML is parsed to `unknown`, each known key is
 * checked and converted, defaults fill the rest, unknown keys are reported as
 * warnings. Errors name the file and the key.
 */
import { readFile } from "node:fs/promises";
import { parse } from "smol-toml";
import { VmpodError, messageOf } from "../common/errors.js";
import { defaultConfig } from "./defaults.js";
import type { Acceleration, Config, MachineType, SharedFs } from "./types.js";

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
      blockDeviceDriver: reader.oneOf("hypervisor.qemu.block_device_driver", ["virtio-blk"], d.hypervisor.blockDeviceDriver),
    },
    agent: {
      dialTimeoutMs: reader.int("agent.kata.dial_timeout", d.agent.dialTimeoutMs / 1000, 1, 3600) * 1000,
      callTimeoutMs: reader.int("agent.kata.call_timeout", d.agent.callTimeoutMs / 1000, 1, 3600) * 1000,
    },
    runtime: {
      stateRoot: reader.str("runtime.state_root", d.runtime.stateRoot),
      logLevel: reader.oneOf("runtime.log_level", ["debug", "info", "warn", "error"], d.runtime.logLevel),
    },
  };
  return { config, warnings: reader.unknownKeys() };
}

class Reader {
  private readonly used = new Set<string>();

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
    return warnings;
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
