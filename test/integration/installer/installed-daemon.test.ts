/**
 * The installer with the real vmpod: the daemon is compiled into a package
 * as the installer's image holds it, installed into a temporary host root,
 * and started from there the way the installed unit says (its ExecStart,
 * re-rooted), with a configuration that keeps its socket, state and data
 * under that root. The installer's real CRI client waits for it; uninstall
 * stops it and leaves the root as it was, with nothing running.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess, execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { findRepoRoot } from "../../../src/common/fs.js";
import { silentLogger } from "../../../src/common/log.js";
import { createCriClient } from "../../../src/cri/client.js";
import type { HostCommands } from "../../../src/installer/host-commands.js";
import { DEPLOY_FILES } from "../../../src/installer/host-files.js";
import { install, uninstall } from "../../../src/installer/installer.js";
import { HOST_PATHS, HostRoot } from "../../../src/installer/layout.js";
import type { PayloadSource } from "../../../src/installer/payload.js";
import { leftovers } from "../../helpers/leaks.js";
import { guestImage } from "../../helpers/vm-fixture.js";
import { makeHostRoot, snapshot } from "../../unit/installer/trees.js";

/** vmpod's package as the installer's image has it: compiled here, its dependencies linked from the repository's. */
async function buildPackage(repo: string, dir: string): Promise<void> {
  await mkdir(join(dir, "node_modules"), { recursive: true });
  for (const name of await readdir(join(repo, "node_modules"))) {
    if (!name.startsWith(".")) await symlink(join(repo, "node_modules", name), join(dir, "node_modules", name));
  }
  const tsconfig = join(dir, "tsconfig.build.json");
  await writeFile(
    tsconfig,
    JSON.stringify({
      extends: join(repo, "tsconfig.json"),
      // What the daemon and the installer import, from their entry points; emitted even if
      // another part of the tree does not type-check at this moment (the type check is lint's job).
      compilerOptions: { outDir: join(dir, "dist"), rootDir: repo, noEmitOnError: false, sourceMap: false },
      files: [join(repo, "src/main.ts"), join(repo, "src/installer/main.ts")],
      include: [],
    }),
  );
  await promisify(execFile)(process.execPath, [join(repo, "node_modules/typescript/bin/tsc"), "-p", tsconfig], { cwd: repo }).catch((e: { stdout?: string }) => {
    process.stdout.write(`      (tsc reported type errors; the emitted code is used anyway)\n${e.stdout ?? ""}`);
  });
  await readFile(join(dir, "dist/src/main.js"));
  await cp(join(repo, "package.json"), join(dir, "package.json"));
  if (await readdir(join(repo, "config")).then(() => true, () => false)) await cp(join(repo, "config"), join(dir, "config"), { recursive: true });
  for (const file of Object.values(DEPLOY_FILES)) await cp(join(repo, file), join(dir, file));
}

/** systemd for vmpod.service alone: runs the installed unit's ExecStart under the root, stops it with SIGTERM as KillMode=process does. */
class UnitRunner implements HostCommands {
  readonly calls: string[] = [];
  child: ChildProcess | undefined;
  output = "";

  constructor(
    private readonly root: string,
    private readonly config: string,
  ) {}

  async systemctl(args: readonly string[]): Promise<void> {
    const call = args.join(" ");
    this.calls.push(call);
    if (call === "restart vmpod.service") await this.stop();
    if (call === "restart vmpod.service" || call === "enable --now vmpod.service") await this.start();
    if (call === "disable --now vmpod.service") await this.stop();
  }

  private async start(): Promise<void> {
    if (this.child && this.child.exitCode === null) return;
    const unit = await readFile(join(this.root, HOST_PATHS.unit), "utf8");
    const exec = /^ExecStart=(.+)$/m.exec(unit)?.[1];
    assert.ok(exec, "the installed unit has an ExecStart");
    const [program, ...args] = exec.split(" ").map((a) => (a.startsWith("/opt/") ? join(this.root, a) : a));
    this.child = spawn(program as string, [...args, "--config", this.config], { stdio: ["ignore", "pipe", "pipe"] });
    this.child.stdout?.on("data", (b: Buffer) => (this.output += b.toString()));
    this.child.stderr?.on("data", (b: Buffer) => (this.output += b.toString()));
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((resolve) => c.once("exit", resolve));
    c.kill("SIGTERM");
    await exited;
  }
}

describe("installer: the installed vmpod runs (real daemon, temporary host root)", function () {
  this.timeout(600_000);
  let scratch: string;
  let source: PayloadSource;

  before(async () => {
    const repo = await findRepoRoot(import.meta.dirname);
    const image = await guestImage();
    scratch = await mkdtemp(join(tmpdir(), "vmpod-inst-"));
    await buildPackage(repo, join(scratch, "package"));
    source = { packageDir: join(scratch, "package"), guestDir: image.dir, nodeBinary: process.execPath };
  });
  after(async () => {
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("installs, starts the installed daemon and finds it ready; a repeat leaves it running; uninstall leaves nothing", async () => {
    const root = join(scratch, "host");
    await makeHostRoot(root);
    const before = await snapshot(root);
    // The node's own configuration (installed by the node config only when there is none): everything under the root.
    const config = join(scratch, "node.toml");
    await writeFile(
      config,
      [
        "[runtime]",
        `state_root = "${root}/run/vmpod"`,
        'default_handler = "runc"',
        "[cri]",
        `socket = "${root}${HOST_PATHS.socket}"`,
        "[image]",
        `root = "${root}/var/lib/vmpod/image"`,
        "[cni]",
        `conf_dir = "${root}/etc/cni/net.d"`,
        `cache_dir = "${root}/var/lib/vmpod/cni"`,
        "[metrics]",
        "enable = false",
        "",
      ].join("\n"),
    );
    const systemd = new UnitRunner(root, config);
    const deps = { host: new HostRoot(root), commands: systemd, logger: silentLogger };
    try {
      await install(deps, { source, readyTimeoutMs: 120_000 }).catch((err: unknown) => {
        throw new Error(`${String(err)}\ndaemon output:\n${systemd.output.slice(-4000)}`);
      });
      assert.deepEqual(systemd.calls, ["daemon-reload", "enable vmpod.service", "restart vmpod.service"]);
      const pid = systemd.child?.pid;
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, "utf8")).split("\0");
      assert.equal(cmdline[0], join(root, "opt/vmpod/bin/node"), "the daemon runs on the installed node binary");
      assert.equal(cmdline[1], join(root, "opt/vmpod/dist/src/main.js"));

      const client = createCriClient(join(root, HOST_PATHS.socket));
      try {
        const version = await client.runtime.version({ version: "v1" });
        assert.equal(version.runtimeName, "vmpod");
        assert.equal(version.runtimeVersion, JSON.parse(await readFile(join(source.packageDir, "package.json"), "utf8")).version);
        const status = await client.runtime.status({ verbose: true });
        assert.deepEqual(JSON.parse(status.info.info ?? "{}").defaultHandler, "runc", "the daemon read the node's configuration");
      } finally {
        client.close();
      }

      systemd.calls.length = 0;
      await install(deps, { source, readyTimeoutMs: 60_000 });
      assert.deepEqual(systemd.calls, ["daemon-reload", "enable --now vmpod.service"]);
      assert.equal(systemd.child?.pid, pid, "the same install: the daemon was not restarted");

      await uninstall(deps, { source, purge: true });
      assert.equal(systemd.child?.exitCode !== null || systemd.child?.signalCode !== null, true, "the daemon is stopped");
      assert.deepEqual(await snapshot(root), before);
    } finally {
      await systemd.stop();
    }
    // The root's files are compared above (it holds the node's own); no process or mount may be left.
    const left = await leftovers(root);
    assert.deepEqual({ processes: left.processes, mounts: left.mounts }, { processes: [], mounts: [] });
  });
});
