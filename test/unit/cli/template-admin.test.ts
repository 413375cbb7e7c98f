import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { kindOf } from "../../../src/common/errors.js";
import { destroyTemplates, listTemplates, templateStatus, waitForOthersBuilding } from "../../../src/sandbox/template-admin.js";
import { TEMPLATE_FORMAT, type TemplateKey } from "../../../src/sandbox/template-key.js";
import { fakeTemplate } from "./fake-templates.js";

const FILES = { "/usr/bin/qemu-system-x86_64": "1:2:3:4", "/g/vmlinux": "5:6:7:8" };
const OLD_FILES = { "/usr/bin/qemu-system-x86_64": "1:2:3:4", "/g/vmlinux": "9:9:9:9" };
const CURRENT: TemplateKey = { key: "aaaa000000000001", inputs: { format: TEMPLATE_FORMAT, args: ["-m", "256"], files: FILES } };
const LIVE_PID = 4242;
const isAlive = (pid: number) => pid === LIVE_PID;

describe("template admin", () => {
  let root: string;

  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), "vmpod-templates-"));
  });
  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  async function fill(): Promise<void> {
    await fakeTemplate(root, CURRENT.key, FILES);
    await fakeTemplate(root, "bbbb000000000002", FILES, { buildMs: 50_000, state: undefined, memory: undefined, size: 100 });
    await fakeTemplate(root, "cccc000000000003", OLD_FILES);
    await fakeTemplate(root, "dddd000000000004", FILES, { key: "eeee000000000005" });
    await mkdir(join(root, "ffff000000000006"));
    await mkdir(join(root, `${CURRENT.key}.tmp-${LIVE_PID}-0a0b0c0d`, "vm"), { recursive: true });
    await mkdir(join(root, `${CURRENT.key}.tmp-999999-01020304`, "vm"), { recursive: true });
  }

  it("lists each template with what its manifest says, and the unfinished builds with whether their process lives", async () => {
    await fill();
    const listing = await listTemplates(root, isAlive);
    assert.equal(listing.exists, true);
    assert.deepEqual(
      listing.templates.map((t) => [t.key, t.sizeBytes, t.buildMs, t.builtAt, t.problem]),
      [
        [CURRENT.key, 100, 41_234, "2026-11-23T15:00:00.000Z", undefined],
        ["bbbb000000000002", 100, 50_000, "2026-11-23T15:00:00.000Z", undefined], // one size: the state alone
        ["cccc000000000003", 100, 41_234, "2026-11-23T15:00:00.000Z", undefined],
        ["dddd000000000004", 100, 41_234, "2026-11-23T15:00:00.000Z", "the manifest is another template's"],
        ["ffff000000000006", undefined, undefined, undefined, "no manifest"],
      ],
    );
    assert.equal(listing.templates[0]?.dir, join(root, CURRENT.key));
    assert.deepEqual(
      listing.unfinished.map((u) => [u.key, u.pid, u.alive]),
      [
        [CURRENT.key, LIVE_PID, true],
        [CURRENT.key, 999999, false],
      ],
    );
  });

  it("tells the default shape's template from other shapes', stale and broken ones", async () => {
    await fill();
    const { templates } = await listTemplates(root, isAlive);
    assert.deepEqual(
      templates.map((t) => templateStatus(t, CURRENT)),
      ["current", "other-shape", "stale", "broken", "broken"],
    );
    assert.deepEqual(
      templates.map((t) => templateStatus(t, undefined)),
      ["unknown", "unknown", "unknown", "broken", "broken"],
    );
  });

  it("a template path that does not exist holds no templates", async () => {
    const listing = await listTemplates(join(root, "nope"), isAlive);
    assert.deepEqual(listing, { dir: join(root, "nope"), exists: false, templates: [], unfinished: [] });
  });

  it("destroys the templates named, and the builds of dead processes, leaving a live build alone", async () => {
    await fill();
    const result = await destroyTemplates(root, ["cccc000000000003", "bbbb000000000002"], isAlive);
    assert.deepEqual(result, { removed: ["cccc000000000003", "bbbb000000000002"], abandoned: [`${CURRENT.key}.tmp-999999-01020304`], building: [`${CURRENT.key}.tmp-${LIVE_PID}-0a0b0c0d`] });
    assert.deepEqual((await readdir(root)).sort(), [CURRENT.key, `${CURRENT.key}.tmp-${LIVE_PID}-0a0b0c0d`, "dddd000000000004", "ffff000000000006"]);
  });

  it("an unknown key removes nothing and is NotFound, naming the keys there are", async () => {
    await fill();
    await assert.rejects(destroyTemplates(root, [CURRENT.key, "0123"], isAlive), (err: unknown) => {
      assert.equal(kindOf(err), "NotFound");
      assert.match((err as Error).message, /^no template 0123 in .* \(there are: aaaa000000000001, bbbb000000000002/);
      return true;
    });
    assert.equal((await readdir(root)).length, 7, "nothing removed");
    await assert.rejects(destroyTemplates(join(root, "nope"), ["0123"], isAlive), /does not exist/);
  });

  it("destroys every template with all; an empty or missing path is nothing to do", async () => {
    await fill();
    const result = await destroyTemplates(root, "all", isAlive);
    assert.equal(result.removed.length, 5);
    assert.deepEqual(await readdir(root), [`${CURRENT.key}.tmp-${LIVE_PID}-0a0b0c0d`]);
    assert.deepEqual(await destroyTemplates(join(root, "nope"), "all", isAlive), { removed: [], abandoned: [], building: [] });
  });

  it("waits while another live process builds the same template, and not for other keys, dead processes or itself", async () => {
    const other = join(root, `${CURRENT.key}.tmp-${LIVE_PID}-03030303`);
    await mkdir(other);
    await mkdir(join(root, `bbbb000000000002.tmp-${LIVE_PID}-04040404`));
    await mkdir(join(root, `${CURRENT.key}.tmp-999999-05050505`));
    await mkdir(join(root, `${CURRENT.key}.tmp-${process.pid}-06060606`));
    const alive = (pid: number) => pid === LIVE_PID || pid === process.pid;
    let done = false;
    const waiting = waitForOthersBuilding(root, CURRENT.key, { isAlive: alive, pollMs: 20 }).finally(() => (done = true));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(done, false, "still waiting while the build's directory is there");
    await rm(other, { recursive: true });
    assert.deepEqual(await waiting, [LIVE_PID]);
    assert.deepEqual(await waitForOthersBuilding(root, CURRENT.key, { isAlive: alive }), [], "nothing to wait for");
    await mkdir(other);
    const stop = new AbortController();
    const cut = waitForOthersBuilding(root, CURRENT.key, { isAlive: alive, pollMs: 20, signal: stop.signal });
    stop.abort(new Error("interrupted"));
    await assert.rejects(cut, /interrupted/);
  });
});
