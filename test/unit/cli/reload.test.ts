import assert from "node:assert/strict";
import { createLiveLogger } from "../../../src/cli/live-logger.js";
import { ConfigReloader, logLevelOf, type Reloadable } from "../../../src/cli/reload.js";
import { VmpodError } from "../../../src/common/errors.js";
import type { Level } from "../../../src/common/log.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { parseConfig, type Loaded } from "../../../src/config/load.js";

/** A reloader over an in-memory file whose text the test changes between reloads. */
function setup(initial: string, forceDebug = false) {
  const file = { text: initial };
  const lines: Record<string, unknown>[] = [];
  const live = createLiveLogger({ level: "info", sink: { write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) } });
  const applied: { levels: Level[]; debug: boolean[] } = { levels: [], debug: [] };
  const target: Reloadable = {
    setLogLevel(level) {
      applied.levels.push(level);
      live.setLevel(level);
    },
    setDebug: (on) => applied.debug.push(on),
  };
  const load = (path: string, assetDir: string): Promise<Loaded> => {
    try {
      return Promise.resolve(parseConfig(file.text, path, assetDir));
    } catch (err) {
      return Promise.reject(err instanceof VmpodError ? err : new VmpodError("Internal", "parse", { cause: err }));
    }
  };
  const config = parseConfig(initial, "/etc/vmpod/configuration.toml", "/g").config;
  const reloader = new ConfigReloader({ path: "/etc/vmpod/configuration.toml", assetDir: "/g", config, target, logger: live.logger, forceDebug, load });
  return { file, lines, live, applied, reloader };
}

describe("configuration reload (SIGHUP)", () => {
  it("applies the log level and debug switch at once, and names the keys that need a restart in one warning", async () => {
    const t = setup('[runtime]\nlog_level = "info"\n');
    t.file.text = '[runtime]\nlog_level = "warn"\nstate_root = "/srv/run"\n[hypervisor.qemu]\ndefault_memory = 512\n';
    const diff = await t.reloader.reload();
    assert.deepEqual(diff, { live: ["runtime.log_level"], restart: ["hypervisor.qemu.default_memory", "runtime.state_root"] });
    assert.deepEqual(t.applied, { levels: ["warn"], debug: [false] });
    assert.equal(t.live.level(), "warn");
    const warnings = t.lines.filter((l) => l.level === "warn");
    assert.equal(warnings.length, 1);
    assert.equal(warnings[0]?.msg, "reload: changed keys that take effect only after a restart: hypervisor.qemu.default_memory, runtime.state_root");
    assert.equal(t.lines.filter((l) => l.level === "info").length, 0, "info lines are below the new level");
    // The live key is in force; the restart keys are not, and are named again on the next reload.
    assert.equal(t.reloader.config.runtime.logLevel, "warn");
    assert.equal(t.reloader.config.runtime.stateRoot, "/run/vmpod");
    assert.deepEqual(await t.reloader.reload(), { live: [], restart: ["hypervisor.qemu.default_memory", "runtime.state_root"] });
  });

  it("turns debug on and off with enable_debug, the command line's --debug winning", async () => {
    const t = setup("");
    t.file.text = "[runtime]\nenable_debug = true\n";
    await t.reloader.reload();
    assert.equal(t.live.level(), "debug");
    t.live.logger.child({ pod: "p1" }).debug("traced");
    assert.deepEqual(
      t.lines.filter((l) => l.msg === "traced").map((l) => l.pod),
      ["p1"],
      "children made before see the new level",
    );
    t.file.text = "[runtime]\nenable_debug = false\n";
    await t.reloader.reload();
    assert.equal(t.live.level(), "info");
    assert.deepEqual(t.applied.debug, [true, false]);
    const forced = setup("", true);
    forced.file.text = '[runtime]\nlog_level = "error"\n';
    await forced.reloader.reload();
    assert.equal(forced.live.level(), "debug");
  });

  it("keeps the configuration in force when the file no longer reads, and says why", async () => {
    const t = setup('[runtime]\nlog_level = "debug"\n');
    t.live.setLevel("debug");
    t.file.text = "[runtime]\nlog_level = \n";
    assert.equal(await t.reloader.reload(), undefined);
    assert.deepEqual(t.applied.levels, []);
    assert.equal(t.live.level(), "debug");
    const error = t.lines.find((l) => l.level === "error");
    assert.equal(error?.msg, "reload: the configuration was not reloaded; the one in force stays");
    assert.match(String(error?.err), /^\/etc\/vmpod\/configuration\.toml:2:\d+: not valid TOML/);
  });

  it("has nothing to read again with the built-in defaults", async () => {
    const lines: string[] = [];
    const live = createLiveLogger({ level: "info", sink: { write: (l) => lines.push(l) } });
    const reloader = new ConfigReloader({ path: undefined, assetDir: "/g", config: defaultConfig("/g"), target: { setLogLevel: () => assert.fail("nothing to apply") }, logger: live.logger });
    assert.equal(await reloader.reload(), undefined);
    assert.match(lines.join(""), /no configuration file is in force/);
  });

  it("runs reloads one at a time, in order", async () => {
    const events: string[] = [];
    const texts = ['[runtime]\nlog_level = "warn"\n', '[runtime]\nlog_level = "error"\n'];
    let n = 0;
    const levels: Level[] = [];
    const reloader = new ConfigReloader({
      path: "/c.toml",
      assetDir: "/g",
      config: defaultConfig("/g"),
      target: { setLogLevel: (l) => levels.push(l) },
      logger: createLiveLogger({ level: "error", sink: { write: () => {} } }).logger,
      load: async (path, assetDir) => {
        const i = n++;
        events.push(`start ${i}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
        events.push(`end ${i}`);
        return parseConfig(texts[i] ?? "", path, assetDir);
      },
    });
    await Promise.all([reloader.reload(), reloader.reload()]);
    assert.deepEqual(events, ["start 0", "end 0", "start 1", "end 1"]);
    assert.deepEqual(levels, ["warn", "error"]);
    assert.equal(reloader.config.runtime.logLevel, "error");
  });

  it("logLevelOf: debug when enable_debug or --debug, else log_level", () => {
    const c = defaultConfig("/g");
    assert.equal(logLevelOf(c), "info");
    assert.equal(logLevelOf({ ...c, runtime: { ...c.runtime, enableDebug: true } }), "debug");
    assert.equal(logLevelOf({ ...c, runtime: { ...c.runtime, logLevel: "error" } }, true), "debug");
  });
});

describe("the daemon's live logger", () => {
  it("filters by the level in force, for itself and every child", () => {
    const out: Record<string, unknown>[] = [];
    const live = createLiveLogger({ level: "warn", sink: { write: (l) => out.push(JSON.parse(l) as Record<string, unknown>) } });
    const child = live.logger.child({ component: "cri" });
    child.info("hidden");
    child.warn("shown");
    live.setLevel("debug");
    child.debug("now shown");
    live.logger.error("top");
    assert.deepEqual(
      out.map((l) => [l.level, l.msg, l.component]),
      [
        ["warn", "shown", "cri"],
        ["debug", "now shown", "cri"],
        ["error", "top", undefined],
      ],
    );
  });
});
