import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { VmpodError } from "../../../src/common/errors.js";
import { configFiles, loadNetworkList, parseNetworkList } from "../../../src/network/cni-config.js";

const invalid = (pattern: RegExp) => (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && pattern.test(err.message);

describe("CNI network configuration", () => {
  let dir: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-cniconf-"));
  });

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a conflist: name, version, plugins and the capabilities they declare", () => {
    const list = parseNetworkList(
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "pods",
        plugins: [
          { type: "bridge", bridge: "br0", ipam: { type: "host-local" } },
          { type: "portmap", capabilities: { portMappings: true, bandwidth: false } },
        ],
      }),
      "/etc/cni/net.d/10.conflist",
    );
    assert.equal(list.name, "pods");
    assert.equal(list.cniVersion, "1.0.0");
    assert.equal(list.disableCheck, false);
    assert.equal(list.source, "/etc/cni/net.d/10.conflist");
    assert.deepEqual(
      list.plugins.map((p) => [p.type, p.capabilities]),
      [
        ["bridge", []],
        ["portmap", ["portMappings"]],
      ],
    );
    assert.equal(list.plugins[0]?.raw.bridge, "br0");
  });

  it("wraps a single plugin's configuration in a list of one", () => {
    const list = parseNetworkList(JSON.stringify({ cniVersion: "0.3.1", name: "single", type: "bridge", bridge: "br1" }), "x.conf");
    assert.equal(list.name, "single");
    assert.equal(list.cniVersion, "0.3.1");
    assert.deepEqual(
      list.plugins.map((p) => p.type),
      ["bridge"],
    );
    assert.equal(list.plugins[0]?.raw.bridge, "br1");
    assert.deepEqual((list.raw.plugins as unknown[]).length, 1);
  });

  it("accepts the versions 0.3.0, 0.3.1, 0.4.0 and 1.0.0 and refuses others, naming the file", () => {
    for (const v of ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]) {
      assert.equal(parseNetworkList(JSON.stringify({ cniVersion: v, name: "n", plugins: [{ type: "bridge" }] }), "f").cniVersion, v);
    }
    assert.throws(() => parseNetworkList(JSON.stringify({ cniVersion: "0.2.0", name: "n", plugins: [{ type: "bridge" }] }), "/d/a.conflist"), invalid(/^\/d\/a\.conflist: "cniVersion" "0\.2\.0" is not supported/));
    assert.throws(() => parseNetworkList(JSON.stringify({ cniVersion: "2.0.0", name: "n", plugins: [{ type: "bridge" }] }), "f"), invalid(/not supported/));
  });

  it("refuses what a runtime cannot run, naming the file and the field", () => {
    const check = (doc: unknown, pattern: RegExp) => assert.throws(() => parseNetworkList(typeof doc === "string" ? doc : JSON.stringify(doc), "/d/x.conflist"), invalid(pattern));
    check("{ not json", /^\/d\/x\.conflist: not JSON/);
    check([], /must be a JSON object/);
    check({ cniVersion: "1.0.0", plugins: [{ type: "bridge" }] }, /"name" must be a network name/);
    check({ cniVersion: "1.0.0", name: "bad name", plugins: [{ type: "bridge" }] }, /"name" must be a network name/);
    check({ cniVersion: "1.0.0", name: "n", plugins: [] }, /"plugins" is empty/);
    check({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "../bin/sh" }] }, /plugins\[0\]: "type" must be a plugin name/);
    check({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge" }, "portmap"] }, /plugins\[1\] must be an object/);
    check({ cniVersion: "1.0.0", name: "n", plugins: [{ type: "bridge", capabilities: [] }] }, /"capabilities" must be an object/);
    check({ cniVersion: "1.0.0", name: "n", disableCheck: "yes", plugins: [{ type: "bridge" }] }, /"disableCheck" must be true or false/);
  });

  it("uses the lexically first *.conflist, *.conf or *.json and ignores other files", async () => {
    await writeFile(join(dir, "99-last.conflist"), JSON.stringify({ cniVersion: "1.0.0", name: "last", plugins: [{ type: "bridge" }] }));
    await writeFile(join(dir, "20-second.conf"), JSON.stringify({ cniVersion: "1.0.0", name: "second", type: "ptp" }));
    await writeFile(join(dir, "00-notes.txt"), "not a configuration");
    await mkdir(join(dir, "05-dir.conflist"));
    assert.deepEqual(await configFiles(dir), [join(dir, "20-second.conf"), join(dir, "99-last.conflist")]);
    assert.equal((await loadNetworkList(dir)).name, "second");
    await writeFile(join(dir, "10-first.json"), JSON.stringify({ cniVersion: "0.4.0", name: "first", plugins: [{ type: "bridge" }] }));
    const list = await loadNetworkList(dir);
    assert.equal(list.name, "first");
    assert.equal(list.source, join(dir, "10-first.json"));
  });

  it("says NotFound when the directory has no configuration or does not exist", async () => {
    await assert.rejects(loadNetworkList(dir), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound" && err.message.includes(dir));
    await assert.rejects(loadNetworkList(join(dir, "missing")), (err: unknown) => err instanceof VmpodError && err.kind === "NotFound");
  });
});
