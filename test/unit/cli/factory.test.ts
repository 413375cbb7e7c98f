import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { collectEnv } from "../../../src/cli/env.js";
import { renderEnv } from "../../../src/cli/env-render.js";
import { factoryFacts, parseFactoryArgs, renderShow, runFactory, templateUse, type FactoryDeps } from "../../../src/cli/factory.js";
import type { ConfigChoice } from "../../../src/config/discovery.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { parseConfig } from "../../../src/config/load.js";
import type { Config } from "../../../src/config/types.js";
import { listTemplates } from "../../../src/sandbox/template-admin.js";
import { TEMPLATE_FORMAT, type TemplateKey } from "../../../src/sandbox/template-key.js";
import { fakeTemplate } from "./fake-templates.js";
import { GUEST, goodHost, probeOf } from "./fake-host.js";

const FILES = { "/usr/bin/qemu-system-x86_64": "1:2:3:4" };
const CURRENT: TemplateKey = { key: "aaaa000000000001", inputs: { format: TEMPLATE_FORMAT, args: [], files: FILES } };
const CHOICE: ConfigChoice = { candidates: [], inForce: undefined };

function configAt(templatePath: string, patch: (c: Config) => Config = (c) => c): Config {
  const base = defaultConfig(GUEST);
  return patch({ ...base, factory: { ...base.factory, templatePath } });
}

const microvm = (c: Config): Config => ({ ...c, hypervisor: { ...c.hypervisor, machineType: "microvm" } });
const off = (c: Config): Config => ({ ...c, factory: { ...c.factory, enableTemplate: false } });

/** The TOML text as plain objects (the parser makes them without a prototype). */
const read = (text: string) => JSON.parse(JSON.stringify(parse(text))) as Record<string, Record<string, unknown>>;

describe("vmpod factory and env's [factory]", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-factory-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("says templates are in use by default, or why not", () => {
    assert.deepEqual(templateUse(configAt(root)), { inUse: true });
    assert.deepEqual(templateUse(configAt(root, off)), { inUse: false, reason: "enable_template = false" });
    const why = templateUse(configAt(root, microvm));
    assert.equal(why.inUse, false);
    assert.match(why.reason ?? "", /^machine_type = "microvm": .*q35/);
  });

  it("env's [factory]: in use, the default shape's key, how many templates and whether its own is built", async () => {
    await fakeTemplate(root, CURRENT.key, FILES);
    await fakeTemplate(root, "bbbb000000000002", FILES);
    const loaded = parseConfig(`[factory]\ntemplate_path = "${root}"\n`, "c.toml", GUEST);
    const facts = await collectEnv({ loaded, choice: CHOICE, vmpodVersion: "0.1.0", digests: false, templateKey: () => Promise.resolve(CURRENT) }, probeOf(goodHost()));
    const doc = read(renderEnv(facts));
    assert.deepEqual(doc.factory, { enable_template: true, in_use: true, template_path: root, vm_cache_number: 0, current_key: CURRENT.key, templates: 2, current_built: true });
  });

  it("env's [factory]: not in use says why and computes no key; a key that cannot be computed says why", async () => {
    let asked = 0;
    const keyOf = () => {
      asked++;
      return Promise.resolve(CURRENT);
    };
    const notUsed = await factoryFacts(configAt(join(root, "missing"), microvm), keyOf);
    assert.equal(asked, 0);
    assert.deepEqual(
      { ...notUsed, reason: notUsed.reason?.slice(0, 24) },
      { enableTemplate: true, inUse: false, reason: 'machine_type = "microvm"', templatePath: join(root, "missing"), vmCacheNumber: 0, templates: 0 },
    );
    const noKey = await factoryFacts(configAt(root), () => Promise.reject(new Error("template input /g/vmlinux cannot be read")));
    assert.equal(noKey.inUse, true);
    assert.equal(noKey.currentKey, undefined);
    assert.equal(noKey.currentKeyError, "template input /g/vmlinux cannot be read");
    const disabled = await factoryFacts(configAt(root, off), keyOf);
    assert.equal(disabled.reason, "enable_template = false");
    assert.equal(disabled.currentKey, CURRENT.key, "the key of a configuration that could use templates is still shown");
    assert.equal(disabled.currentBuilt, false);
    const text = renderEnv({ ...(await collectEnv({ loaded: parseConfig("", "c.toml", GUEST), choice: CHOICE, vmpodVersion: "0", digests: false }, probeOf(goodHost()))), factory: disabled });
    assert.deepEqual(read(text).factory, { enable_template: false, in_use: false, reason: "enable_template = false", template_path: root, vm_cache_number: 0, current_key: CURRENT.key, templates: 0, current_built: false });
  });

  it("parses its arguments, refusing what is ambiguous", () => {
    assert.deepEqual(parseFactoryArgs(["build"], false), { sub: "build" });
    assert.deepEqual(parseFactoryArgs(["show"], false), { sub: "show" });
    assert.deepEqual(parseFactoryArgs(["destroy", "a", "b"], false), { sub: "destroy", keys: ["a", "b"] });
    assert.deepEqual(parseFactoryArgs(["destroy"], true), { sub: "destroy", keys: "all" });
    for (const [args, all] of [[["destroy"], false], [["destroy", "a"], true], [["build", "x"], false], [["show"], true], [[], false], [["make"], false]] as const) {
      assert.ok("usage" in parseFactoryArgs(args, all), JSON.stringify(args));
    }
  });

  it("show lists each template with its status against the default shape", async () => {
    await fakeTemplate(root, CURRENT.key, FILES);
    await fakeTemplate(root, "bbbb000000000002", { other: "files" }, { memory: { size: 268_435_456, sha256: "" } });
    await mkdir(join(root, `${CURRENT.key}.tmp-999999-01020304`));
    const listing = await listTemplates(root, () => false);
    assert.ok(listing.templates.every((t) => t.diskBytes >= 100), "the files' blocks are counted");
    // Space on disk depends on the filesystem: fixed here.
    const fixed = { ...listing, templates: listing.templates.map((t, i) => ({ ...t, diskBytes: [4096, 80 * 1024 * 1024][i] ?? 0 })) };
    const text = renderShow(configAt(root), { inUse: true }, CURRENT, undefined, fixed);
    assert.deepEqual(text.split("\n"), [
      "vm templates: in use",
      `template path: ${root}`,
      `default shape (1 vCPU, 256 MiB): template ${CURRENT.key}, built`,
      "KEY               SIZE       ON DISK   BUILT AT                  BUILD   STATUS",
      `${CURRENT.key}  0.0 MiB    0.0 MiB   2026-11-23T15:00:00.000Z  41.2 s  current`,
      "bbbb000000000002  256.0 MiB  80.0 MiB  2026-11-23T15:00:00.000Z  41.2 s  stale",
      `unfinished: ${CURRENT.key}.tmp-999999-01020304 (process 999999 is gone; destroy removes it)`,
      "",
    ]);
    const none = renderShow(configAt(join(root, "x"), microvm), { inUse: false, reason: "machine_type" }, undefined, undefined, await listTemplates(join(root, "x")));
    assert.equal(none, `vm templates: not in use: machine_type\ntemplate path: ${join(root, "x")} (does not exist yet)\nno templates\n`);
  });

  it("build refuses when templates are not in use, saying why, without making an engine", async () => {
    const out: string[] = [];
    const deps: FactoryDeps = { config: configAt(root, microvm), engine: () => Promise.reject(new Error("no engine expected")), out: (t) => out.push(t) };
    assert.equal(await runFactory({ sub: "build" }, deps), 1);
    assert.match(out.join(""), /^vm templates are not in use, nothing to build: machine_type = "microvm"/);
  });

  it("destroy: an unknown key is exit 1 with a message; a known one is removed", async () => {
    await fakeTemplate(root, CURRENT.key, FILES);
    const out: string[] = [];
    const deps: FactoryDeps = { config: configAt(root), engine: () => Promise.reject(new Error("no engine expected")), out: (t) => out.push(t), isAlive: () => false };
    assert.equal(await runFactory({ sub: "destroy", keys: ["0123456789abcdef"] }, deps), 1);
    assert.match(out.join(""), /^no template 0123456789abcdef in /);
    assert.deepEqual(await readdir(root), [CURRENT.key]);
    out.length = 0;
    assert.equal(await runFactory({ sub: "destroy", keys: [CURRENT.key] }, deps), 0);
    assert.equal(out.join(""), `removed template ${CURRENT.key}\n`);
    assert.deepEqual(await readdir(root), []);
  });
});
