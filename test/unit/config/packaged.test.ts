import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { parse } from "smol-toml";
import { defaultConfig } from "../../../src/config/defaults.js";
import { packagedConfigPath } from "../../../src/config/discovery.js";
import { configKeys, parseConfig } from "../../../src/config/load.js";
import { splitKey } from "../../../src/config/locate.js";

const REPO = join(import.meta.dirname, "../../..");

/** The packaged file with its commented-out settings and examples ("#key = ...", "#[table]") turned on. */
function uncommented(text: string): string {
  return text.replace(/^#(?=[[A-Za-z"])/gm, "");
}

/** Whether the parsed document holds `key`; "*" matches any table name. */
function holds(doc: unknown, parts: readonly string[]): boolean {
  if (parts.length === 0) return true;
  if (doc === null || typeof doc !== "object" || Array.isArray(doc)) return false;
  const [head, ...rest] = parts;
  const table = doc as Record<string, unknown>;
  if (head === "*") return Object.values(table).some((v) => holds(v, rest));
  return head !== undefined && head in table && holds(table[head], rest);
}

describe("the packaged config/configuration.toml", () => {
  let text: string;
  before(async () => {
    text = await readFile(packagedConfigPath(REPO), "utf8");
  });

  it("reads as exactly the built-in defaults, without a warning", () => {
    const loaded = parseConfig(text, "configuration.toml", "/opt/vmpod/guest/out/current");
    assert.deepEqual(loaded.config, defaultConfig("/opt/vmpod/guest/out/current"));
    assert.deepEqual(loaded.warnings, []);
  });

  it("holds every key vmpod reads, set or commented out, with the examples valid", () => {
    const keys = configKeys();
    // The list comes from reading: it must hold the keys of every section, the per-name tables included.
    assert.ok(keys.length >= 35, `${keys.length} keys read`);
    for (const k of ["hypervisor.qemu.default_memory", "runtime.handlers.*.runtime_path", "registries.*.ca_files", "metrics.address"]) assert.ok(keys.includes(k), k);
    const on = uncommented(text);
    const doc = parse(on);
    const missing = keys.filter((k) => !holds(doc, k.split(".").flatMap((p) => (p === "*" ? ["*"] : (splitKey(p) ?? [p])))));
    assert.deepEqual(missing, [], "keys read by load.ts but absent from the packaged file");
    // Turned on, the examples read without warnings: every commented key is one vmpod knows.
    const loaded = parseConfig(on, "uncommented", "/a");
    assert.deepEqual(loaded.warnings, []);
    assert.ok("crun" in loaded.config.runtime.handlers);
    assert.ok("docker.io" in loaded.config.image.registries);
  });

  it("documents each key it sets with a comment just above it", () => {
    const lines = text.split("\n");
    const undocumented = lines.flatMap((line, i) => {
      if (!/^#?[a-z_]+ = /.test(line)) return [];
      // Walk up over the settings of the same group to the comment that explains them.
      let j = i - 1;
      while (j >= 0 && /^#?[a-z_]+ = /.test(lines[j] ?? "")) j--;
      while (j >= 0 && /^#?\[/.test(lines[j] ?? "")) j--;
      return /^# /.test(lines[j] ?? "") ? [] : [`line ${i + 1}: ${line}`];
    });
    assert.deepEqual(undocumented, []);
  });
});
