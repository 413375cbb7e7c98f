/**
 * A vmpod daemon for end-to-end tests: `vmpod serve` as a child process with
 * its own configuration (state, images, socket, logs under one temporary
 * directory), a CRI client on its socket, and its kill, restart and
 * teardown. Teardown removes every pod through CRI, stops the daemon and
 * checks nothing is left.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCriClient, type CriClient } from "../src/cri/client.js";
import { findRepoRoot } from "../src/common/fs.js";
import { unmountTree } from "../src/common/mount.js";
import { killProcessesMentioning } from "../src/common/processes.js";
import { sharedTemplatesDir } from "../test/helpers/templates-dir.js";
import { guestImage } from "../test/helpers/vm-fixture.js";

export interface Daemon {
  readonly root: string;
  readonly socket: string;
  readonly logDir: string;
  client: CriClient;
  /** What the daemon printed, for failures. */
  output(): string;
  /** kill -9 of the daemon alone (its pods stay). */
  kill9(): Promise<void>;
  /** Starts the daemon again on the same state. */
  restart(): Promise<void>;
  /** Removes every pod through CRI, stops the daemon, kills what is left, removes the directory. */
  dispose(): Promise<void>;
}

export interface DaemonOptions {
  /** More configuration.toml, appended. */
  readonly extraToml?: string;
  /** More keys of the [runtime] section ("internetworking_model = ..."). */
  readonly runtimeToml?: string;
  /**
   * A network namespace (by name, under /run/netns) the daemon runs in, as
   * if it were the node's: its CNI bridge, routes and iptables rules stay there.
   */
  readonly netns?: string;
}

export async function startDaemon(options: DaemonOptions = {}): Promise<Daemon> {
  // A metrics endpoint on any free port unless the test says otherwise: daemons of one run must not clash.
  const extraToml = options.extraToml?.includes("[metrics]") ? options.extraToml : `[metrics]\naddress = "127.0.0.1:0"\n${options.extraToml ?? ""}`;
  // The daemon boots the image the guest build made last: build it first if the guest's sources changed.
  await guestImage();
  const root = await mkdtemp(join(tmpdir(), "vmpod-e2e-"));
  const socket = join(root, "vmpod.sock");
  const logDir = join(root, "logs");
  await mkdir(logDir);
  const config = join(root, "configuration.toml");
  // The run's daemons share their VM templates, unless the test configures its own.
  const templatesToml = extraToml.includes("[factory]") ? "" : `[factory]\ntemplate_path = "${sharedTemplatesDir()}"\n`;
  await writeFile(
    config,
    `[runtime]\nstate_root = "${join(root, "state")}"\n${options.runtimeToml ?? ""}\n[image]\nroot = "${join(root, "images")}"\n[cri]\nsocket = "${socket}"\n${templatesToml}${extraToml}\n`,
  );
  const repo = await findRepoRoot(import.meta.dirname);
  let child: ChildProcess | undefined;
  let output = "";
  const launch = async () => {
    const command = [process.execPath, "--import", "tsx", join(repo, "src/main.ts"), "serve", "--config", config];
    // nsenter enters the network namespace alone (`ip netns exec` would give the daemon a mount
    // namespace of its own, hiding from later daemons the netns mounts it makes) and becomes the
    // daemon (exec), so its pid is the daemon's.
    const [program, ...args] = options.netns ? ["nsenter", `--net=/run/netns/${options.netns}`, "--", ...command] : command;
    child = spawn(program as string, args, { cwd: repo, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
    const client = createCriClient(socket);
    try {
      await client.waitForReady(60_000);
    } catch (err) {
      client.close();
      throw new Error(`the daemon did not come up: ${String(err)}\n${output}`);
    }
    return client;
  };
  const stopChild = async (signal: NodeJS.Signals) => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise((r) => c.once("exit", r));
    c.kill(signal);
    await exited;
  };
  const daemon: Daemon = {
    root,
    socket,
    logDir,
    client: await launch(),
    output: () => output,
    async kill9() {
      daemon.client.close();
      await stopChild("SIGKILL");
    },
    async restart() {
      daemon.client = await launch();
    },
    async dispose() {
      try {
        const pods = await daemon.client.runtime.listPodSandbox({});
        for (const p of pods.items) {
          await daemon.client.runtime.stopPodSandbox({ podSandboxId: p.id });
          await daemon.client.runtime.removePodSandbox({ podSandboxId: p.id });
        }
      } finally {
        daemon.client.close();
        await stopChild("SIGTERM");
        await killProcessesMentioning(root);
        await unmountTree(root);
        await rm(root, { recursive: true, force: true });
      }
    },
  };
  return daemon;
}
