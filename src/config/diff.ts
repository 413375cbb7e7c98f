/**
 * What changed between two configurations, by configuration.toml key, and
 * whether the running daemon can take each change at once (live) or only
 * when it starts again (restart). Pure: the daemon's reload (SIGHUP) applies
 * the live part and names the rest.
 */
import type { Config } from "./types.js";

export interface ConfigDiff {
  /** Changed keys the daemon applies at once. */
  readonly live: string[];
  /** Changed keys that take effect only after a restart. */
  readonly restart: string[];
}

/** Config field → configuration.toml key, for every field holding a value. */
export const TOML_KEY_OF: Readonly<Record<string, string>> = {
  "hypervisor.path": "hypervisor.qemu.path",
  "hypervisor.kernel": "hypervisor.qemu.kernel",
  "hypervisor.initrd": "hypervisor.qemu.initrd",
  "hypervisor.image": "hypervisor.qemu.image",
  "hypervisor.machineType": "hypervisor.qemu.machine_type",
  "hypervisor.kernelParams": "hypervisor.qemu.kernel_params",
  "hypervisor.defaultVcpus": "hypervisor.qemu.default_vcpus",
  "hypervisor.defaultMemory": "hypervisor.qemu.default_memory",
  "hypervisor.accel": "hypervisor.qemu.accel",
  "hypervisor.sharedFs": "hypervisor.qemu.shared_fs",
  "hypervisor.virtioFsDaemon": "hypervisor.qemu.virtio_fs_daemon",
  "hypervisor.blockDeviceDriver": "hypervisor.qemu.block_device_driver",
  "hypervisor.disableBlockDeviceUse": "hypervisor.qemu.disable_block_device_use",
  "agent.dialTimeoutMs": "agent.kata.dial_timeout",
  "agent.callTimeoutMs": "agent.kata.call_timeout",
  "runtime.stateRoot": "runtime.state_root",
  "runtime.logLevel": "runtime.log_level",
  "runtime.enableDebug": "runtime.enable_debug",
  "runtime.defaultHandler": "runtime.default_handler",
  "cri.socket": "cri.socket",
  "cri.streamAddress": "cri.stream_address",
  "cri.streamTokenTtlMs": "cri.stream_token_ttl",
  "image.root": "image.root",
  "image.platform": "image.platform",
  "image.maxConcurrentDownloads": "image.max_concurrent_downloads",
  "image.sandboxImage": "image.sandbox_image",
  "network.confDir": "cni.conf_dir",
  "network.binDirs": "cni.bin_dirs",
  "network.cacheDir": "cni.cache_dir",
  "network.pluginTimeoutMs": "cni.plugin_timeout",
  "network.interNetworkingModel": "runtime.internetworking_model",
  "metrics.enable": "metrics.enable",
  "metrics.address": "metrics.address",
  "factory.enableTemplate": "factory.enable_template",
  "factory.templatePath": "factory.template_path",
  "factory.vmCacheNumber": "factory.vm_cache_number",
};

/** Config fields that are maps by name: compared entry by entry, named by the entry's table. */
export const TABLE_FIELDS: Readonly<Record<string, (name: string) => string>> = {
  "runtime.handlers": (name) => `runtime.handlers.${name}`,
  "image.registries": (host) => `registries.${JSON.stringify(host)}`,
};

/** The keys a running daemon applies at once: logging only. */
export const LIVE_KEYS: ReadonlySet<string> = new Set(["runtime.log_level", "runtime.enable_debug"]);

/** The changed keys of `next` against `old`, split into live and restart. */
export function diffConfig(old: Config, next: Config): ConfigDiff {
  const changed: string[] = [];
  for (const [field, key] of Object.entries(TOML_KEY_OF)) {
    if (!same(fieldOf(old, field), fieldOf(next, field))) changed.push(key);
  }
  for (const [field, keyOf] of Object.entries(TABLE_FIELDS)) {
    const a = (fieldOf(old, field) ?? {}) as Record<string, unknown>;
    const b = (fieldOf(next, field) ?? {}) as Record<string, unknown>;
    for (const name of [...new Set([...Object.keys(a), ...Object.keys(b)])].sort()) {
      if (!same(a[name], b[name])) changed.push(keyOf(name));
    }
  }
  return { live: changed.filter((k) => LIVE_KEYS.has(k)), restart: changed.filter((k) => !LIVE_KEYS.has(k)) };
}

/** `old` with the live keys of `next`: what is in force once a reload has applied them. */
export function withLiveKeys(old: Config, next: Config): Config {
  return { ...old, runtime: { ...old.runtime, logLevel: next.runtime.logLevel, enableDebug: next.runtime.enableDebug } };
}

/** The value of a dotted Config field ("hypervisor.path"). */
export function fieldOf(config: Config, field: string): unknown {
  let node: unknown = config;
  for (const part of field.split(".")) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<string, unknown>)[part];
  }
  return node;
}

function same(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

/** JSON with object keys sorted, so that key order does not count as a change. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) =>
    v !== null && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))) : v,
  );
}
