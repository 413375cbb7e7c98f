/**
 * configuration.toml → Config. TOML is parsed to `unknown`, each known key is
 * checked and converted, defaults fill the rest, unknown keys are reported as
 * warnings. Errors name the file, the line and the key. Nothing here looks
 * at the host: the files a configuration names are checked by host-files.ts.
 */
import { readFile } from "node:fs/promises";
import { parse, TomlError } from "smol-toml";
import { VmpodError, messageOf } from "../common/errors.js";
import { defaultConfig, MAX_VCPUS, MIN_GUEST_MEMORY_MIB } from "./defaults.js";
import { keyLines, NO_LINES, type KeyLines } from "./locate.js";
import { Reader, type Table } from "./reader.js";
import type { Acceleration, BlockDeviceDriver, Config, InterNetworkingModel, MachineType, SharedFs } from "./types.js";

/** A configuration as read, with where it came from. */
export interface Loaded {
  readonly config: Config;
  readonly warnings: readonly string[];
  /** The file read, or "(built-in defaults)". */
  readonly source: string;
  /** Where each key is written in `source`. */
  readonly lines: KeyLines;
}

export const BUILT_IN_SOURCE = "(built-in defaults)";

/** The defaults, as if read from no file at all. */
export function builtInConfig(assetDir: string): Loaded {
  return { config: defaultConfig(assetDir), warnings: [], source: BUILT_IN_SOURCE, lines: NO_LINES };
}

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
    if (err instanceof TomlError) {
      const what = (err.message.split("\n")[0] ?? "").replace(/^Invalid TOML document: /, "");
      throw new VmpodError("InvalidArgument", `${source}:${err.line}:${err.column}: not valid TOML: ${what}`);
    }
    throw new VmpodError("InvalidArgument", `${source}: ${messageOf(err)}`);
  }
  const lines = keyLines(text);
  const reader = new Reader(source, doc, lines);
  const config = readConfig(reader, defaultConfig(assetDir));
  return { config, warnings: reader.unknownKeys(), source, lines };
}

/**
 * Every key vmpod reads that holds a value, as read from a file that sets
 * none ("*" stands for a registry host or a handler name).
 */
export function configKeys(): readonly string[] {
  const reader = new Reader("", {}, NO_LINES);
  readConfig(reader, defaultConfig("/"));
  return reader.keysRead();
}

function readConfig(reader: Reader, d: Config): Config {
  const config: Config = {
    hypervisor: {
      path: reader.str("hypervisor.qemu.path", d.hypervisor.path),
      kernel: reader.str("hypervisor.qemu.kernel", d.hypervisor.kernel),
      initrd: reader.str("hypervisor.qemu.initrd", d.hypervisor.initrd),
      image: reader.str("hypervisor.qemu.image", d.hypervisor.image),
      machineType: reader.oneOf<MachineType>("hypervisor.qemu.machine_type", ["microvm", "q35"], d.hypervisor.machineType),
      kernelParams: reader.words("hypervisor.qemu.kernel_params", d.hypervisor.kernelParams),
      defaultVcpus: reader.int("hypervisor.qemu.default_vcpus", d.hypervisor.defaultVcpus, 1, MAX_VCPUS),
      defaultMemory: reader.int("hypervisor.qemu.default_memory", d.hypervisor.defaultMemory, MIN_GUEST_MEMORY_MIB, 1 << 20),
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
      streamAddress: reader.address("cri.stream_address", d.cri.streamAddress),
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
      address: reader.address("metrics.address", d.metrics.address),
    },
    factory: {
      enableTemplate: reader.bool("factory.enable_template", d.factory.enableTemplate),
      templatePath: reader.str("factory.template_path", d.factory.templatePath),
      vmCacheNumber: reader.int("factory.vm_cache_number", d.factory.vmCacheNumber, 0, 0),
    },
  };
  const { handlers, defaultHandler } = config.runtime;
  if (!(defaultHandler in handlers)) {
    throw reader.fail(
      "runtime.default_handler",
      `runtime.default_handler = ${JSON.stringify(defaultHandler)} is not among runtime.handlers (${Object.keys(handlers).join(", ") || "none"})`,
    );
  }
  if (!config.hypervisor.disableBlockDeviceUse && config.hypervisor.blockDeviceDriver === "virtio-blk") {
    // microvm has no PCI hot-plug at all; on q35 adding layers on PCI root ports is not built yet.
    throw reader.fail(
      "hypervisor.qemu.block_device_driver",
      `hypervisor.qemu.block_device_driver = "virtio-blk" cannot add image layers to a running VM yet; use "virtio-scsi" with disable_block_device_use = false`,
    );
  }
  return config;
}
