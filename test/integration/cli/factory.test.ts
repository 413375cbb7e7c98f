/**
 * `vmpod factory` and the daemon's template warm-up for real (QEMU under
 * TCG here, the real guest image), as processes: a daemon stopped while it
 * builds its template leaves no template VM behind, nor does an
 * interrupted `factory build`; a `build` while the daemon builds waits for
 * the daemon's build, whose template `env` and `show` name as current, a
 * second `build` finds it, `destroy` refuses an unknown key and removes a
 * known one. Nothing is left afterwards.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse } from "smol-toml";
import { exists } from "../../../src/common/fs.js";
import { mountPoints } from "../../../src/common/mount.js";
import type { GuestImage } from "../../../guest/build/index.js";
import { processesMentioning } from "../../helpers/leaks.js";
import { guestImage } from "../../helpers/vm-fixture.js";
import { runVmpod, startVmpod, type VmpodRun } from "../../helpers/vmpod-cli.js";

const QEMU = "/usr/bin/qemu-system-x86_64";

/** Waits until `ready` holds, polling; fails with `what` when `gone` says it never will. */
async function until(what: string, ready: () => Promise<boolean>, gone: () => boolean): Promise<void> {
  while (!(await ready())) {
    assert.ok(!gone(), `${what}: the process ended first`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Doc = Record<string, Record<string, unknown>>;

describe("vmpod factory and the daemon's template warm-up (real QEMU)", function () {
  this.timeout(20 * 60_000);

  let image: GuestImage;
  let root: string;
  let templates: string;
  let configPath: string;

  before(async () => {
    image = await guestImage();
    root = await mkdtemp(join(tmpdir(), "vmpod-factory-"));
    templates = join(root, "templates");
    configPath = join(root, "configuration.toml");
    await writeFile(
      configPath,
      `[hypervisor.qemu]
path = "${QEMU}"
kernel = "${image.vmlinux ?? image.kernel}"
initrd = "${image.initrd}"
image = "${image.rootImage}"
machine_type = "q35"
default_vcpus = 1
default_memory = 256
[runtime]
state_root = "${join(root, "state")}"
[cri]
socket = "${join(root, "vmpod.sock")}"
[image]
root = "${join(root, "images")}"
[cni]
conf_dir = "${join(root, "net.d")}"
cache_dir = "${join(root, "cni")}"
[metrics]
enable = false
[factory]
enable_template = true
template_path = "${templates}"
`,
    );
  });

  after(async () => {
    // A failed test may have left a VM: end it before looking for leftovers.
    for (const p of await processesMentioning(root)) process.kill(Number(p.split(":")[0]), "SIGKILL");
    await rm(root, { recursive: true, force: true });
    assert.deepEqual((await mountPoints()).filter((m) => m.startsWith(root)), [], "no mount left");
    assert.equal(await exists(root), false);
  });

  afterEach(async () => {
    for (let i = 0; i < 50 && (await processesMentioning(templates)).length > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(await processesMentioning(templates), [], "no template VM left");
    const names = (await exists(templates)) ? await readdir(templates) : [];
    assert.deepEqual(names.filter((n) => n.includes(".tmp-")), [], "no unfinished build left");
  });

  it("a daemon stopped while it builds its template stops the build's VM", async () => {
    const daemon = startVmpod(["serve", "--config", configPath]);
    let ended = false;
    void daemon.exited.then(() => (ended = true));
    try {
      await until("the daemon builds its template in the background", async () => (await processesMentioning(templates)).some((p) => p.includes(QEMU)), () => ended);
      assert.match(daemon.output().stderr, /"msg":"serving CRI"/, "CRI is served while the template is built");
      assert.match(daemon.output().stderr, /"msg":"default vm template: building or checking it"/);
    } finally {
      daemon.child.kill("SIGTERM");
    }
    assert.equal(await daemon.exited, 0, daemon.output().stderr);
    assert.deepEqual(await processesMentioning(templates), [], "the daemon's exit ended its template VM");
    assert.match(daemon.output().stderr, /"msg":"default vm template: build stopped by the shutdown"/);
    assert.deepEqual(await readdir(templates), [], "no template, no work directory");
  });

  it("an interrupted factory build stops its VM", async () => {
    const build = startVmpod(["factory", "build", "--config", configPath]);
    let ended = false;
    void build.exited.then(() => (ended = true));
    await until("factory build starts its template VM", async () => (await processesMentioning(templates)).some((p) => p.includes(QEMU)), () => ended);
    build.child.kill("SIGINT");
    assert.equal(await build.exited, 1);
    assert.match(build.output().stdout, /^interrupted: interrupted by SIGINT; /);
    assert.deepEqual(await processesMentioning(templates), [], "its VM is gone with it");
  });

  it("the daemon's template is the one env and show name as current; factory build waits for it, then finds it; destroy removes it", async () => {
    const env0 = await runVmpod(["env", "--no-digests", "--config", configPath]);
    assert.equal(env0.code, 0, env0.stderr);
    const factory0 = (JSON.parse(JSON.stringify(parse(env0.stdout))) as Doc).factory;
    assert.equal(factory0?.in_use, true);
    assert.equal(factory0?.template_path, templates);
    assert.equal(factory0?.current_built, false);
    const key = String(factory0?.current_key);
    assert.match(key, /^[0-9a-f]{16}$/);

    // The daemon builds it at start; a factory build meanwhile waits for that build instead of making another.
    const daemon = startVmpod(["serve", "--config", configPath]);
    let ended = false;
    void daemon.exited.then(() => (ended = true));
    let built: VmpodRun;
    try {
      await until("the daemon builds its template", async () => (await processesMentioning(templates)).some((p) => p.includes(QEMU)), () => ended);
      built = await runVmpod(["factory", "build", "--config", configPath]);
      assert.match(daemon.output().stderr, new RegExp(`"msg":"default vm template ready","component":"templates","template":"${key}","ms":\\d+`));
    } finally {
      daemon.child.kill("SIGTERM");
    }
    assert.equal(await daemon.exited, 0, daemon.output().stderr);
    assert.equal(built.code, 0, `${built.stdout}\n${built.stderr}`);
    const lines = built.stdout.split("\n");
    // On a fast host the daemon's build may be over before factory build looks: then it has nothing to wait for.
    if (lines[0]?.startsWith("waited")) assert.equal(lines.shift(), `waited for the build of process ${daemon.child.pid} (a running daemon's)`);
    else process.stdout.write("      NOTE: the daemon's build ended before factory build looked for it; its waiting was not exercised\n");
    assert.equal(lines[0], `vm template ${key} was already built for 1 vCPU, 256 MiB`, "one build, the daemon's");
    assert.equal(lines[1], `  directory:  ${join(templates, key)}`);
    assert.match(lines[2] ?? "", /^ {2}size: {7}\d+\.\d (MiB|GiB) \(\d+ bytes\), \d+\.\d (MiB|GiB) on disk$/);
    assert.match(lines[4] ?? "", /^ {2}build time: \d+\.\d s$/);
    const manifest = JSON.parse(await readFile(join(templates, key, "manifest.json"), "utf8")) as { key: string; builtAt: string };
    assert.equal(manifest.key, key);
    assert.equal(lines[3], `  built at:   ${manifest.builtAt}`);
    assert.deepEqual(await readdir(templates), [key]);

    const again = await runVmpod(["factory", "build", "--config", configPath]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout.split("\n")[0], `vm template ${key} was already built for 1 vCPU, 256 MiB`);
    assert.match(again.stdout, new RegExp(`built at: {3}${manifest.builtAt.replace(/\./g, "\\.")}`), "the same template, not a new one");

    const env1 = await runVmpod(["env", "--no-digests", "--config", configPath]);
    const factory1 = (JSON.parse(JSON.stringify(parse(env1.stdout))) as Doc).factory;
    assert.deepEqual(
      { in_use: factory1?.in_use, current_key: factory1?.current_key, templates: factory1?.templates, current_built: factory1?.current_built },
      { in_use: true, current_key: key, templates: 1, current_built: true },
    );

    const show = await runVmpod(["factory", "show", "--config", configPath]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, /^vm templates: in use\n/);
    assert.match(show.stdout, new RegExp(`^default shape \\(1 vCPU, 256 MiB\\): template ${key}, built$`, "m"));
    assert.match(show.stdout, new RegExp(`^${key} +\\d+\\.\\d (MiB|GiB) +\\d+\\.\\d (MiB|GiB) +${manifest.builtAt.replace(/\./g, "\\.")} +\\d+\\.\\d s +current$`, "m"));

    const unknown = await runVmpod(["factory", "destroy", "0123456789abcdef", "--config", configPath]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stdout, new RegExp(`^no template 0123456789abcdef in ${templates} \\(there are: ${key}\\)$`, "m"));
    assert.deepEqual(await readdir(templates), [key], "nothing removed");

    const destroyed = await runVmpod(["factory", "destroy", key, "--config", configPath]);
    assert.equal(destroyed.code, 0, destroyed.stderr);
    assert.equal(destroyed.stdout, `removed template ${key}\n`);
    assert.deepEqual(await readdir(templates), []);
    const show2 = await runVmpod(["factory", "show", "--config", configPath]);
    assert.match(show2.stdout, new RegExp(`template ${key}, not built\nno templates\n$`));
  });
});
