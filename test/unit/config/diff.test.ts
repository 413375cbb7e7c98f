import assert from "node:assert/strict";
import { defaultConfig } from "../../../src/config/defaults.js";
import { diffConfig, fieldOf, LIVE_KEYS, TABLE_FIELDS, TOML_KEY_OF, withLiveKeys } from "../../../src/config/diff.js";
import { configKeys, parseConfig } from "../../../src/config/load.js";

const base = defaultConfig("/g");
const read = (text: string) => parseConfig(text, "c.toml", "/g").config;

/** Every field of a Config that holds a value, as "section.field", maps by name left whole. */
function leafFields(value: unknown, prefix = ""): string[] {
  if (value === null || typeof value !== "object" || Array.isArray(value) || prefix in TABLE_FIELDS) return [prefix];
  return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => leafFields(v, prefix ? `${prefix}.${k}` : k));
}

describe("diffConfig", () => {
  it("finds nothing between equal configurations", () => {
    assert.deepEqual(diffConfig(base, defaultConfig("/g")), { live: [], restart: [] });
    assert.deepEqual(diffConfig(base, read("")), { live: [], restart: [] });
  });

  it("puts the log level and debug switch in live, everything else in restart, by file key", () => {
    const next = read(`[runtime]
log_level = "debug"
enable_debug = true
state_root = "/srv/run"
[hypervisor.qemu]
default_vcpus = 2
kernel_params = "quiet"
[cni]
plugin_timeout = 5
[metrics]
address = "127.0.0.1:9000"
`);
    assert.deepEqual(diffConfig(base, next), {
      live: ["runtime.log_level", "runtime.enable_debug"],
      restart: ["hypervisor.qemu.kernel_params", "hypervisor.qemu.default_vcpus", "runtime.state_root", "cni.plugin_timeout", "metrics.address"],
    });
  });

  it("names handlers and registries added, removed or changed, one by one", () => {
    const old = read(`[registries."docker.io"]
mirrors = ["https://m.example"]
[registries."quay.io"]
insecure_skip_verify = true
`);
    const next = read(`[runtime.handlers.vmpod]
type = "vm"
[runtime.handlers.runc]
type = "oci"
runtime_path = "/usr/bin/crun"
[registries."docker.io"]
mirrors = ["https://m.example"]
[registries."127.0.0.1:5000"]
plain_http = true
`);
    assert.deepEqual(diffConfig(old, next), { live: [], restart: ["runtime.handlers.runc", 'registries."127.0.0.1:5000"', 'registries."quay.io"'] });
  });

  it("maps every field of Config to a key that load.ts reads", () => {
    const fields = leafFields(base).sort();
    assert.deepEqual(fields, [...Object.keys(TOML_KEY_OF), ...Object.keys(TABLE_FIELDS)].sort());
    const keys = new Set(configKeys());
    for (const key of Object.values(TOML_KEY_OF)) assert.ok(keys.has(key), `${key} is read by load.ts`);
    for (const key of LIVE_KEYS) assert.ok(keys.has(key), key);
    for (const field of Object.keys(TOML_KEY_OF)) assert.notEqual(fieldOf(base, field), undefined, field);
  });

  it("withLiveKeys takes exactly the live keys of the new configuration", () => {
    const next = read(`[runtime]\nlog_level = "warn"\nenable_debug = true\nstate_root = "/srv/run"`);
    const merged = withLiveKeys(base, next);
    assert.deepEqual(diffConfig(merged, next), { live: [], restart: ["runtime.state_root"] });
    assert.deepEqual(diffConfig(base, merged), { live: ["runtime.log_level", "runtime.enable_debug"], restart: [] });
  });
});
