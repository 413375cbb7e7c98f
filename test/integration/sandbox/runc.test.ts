/**
 * The runc handler for real: runc from Debian on this host (cgroup v1), a
 * busybox root filesystem as the one layer of an image, pods as namespaces
 * kept by bind mounts, containers under their supervisors. Output, exit
 * codes, exec with pipes and with a terminal, signals, an OOM kill, a
 * daemon "restart" (a second controller recovering the pod), and after
 * every test nothing left: no process, mount, namespace file, state file or
 * cgroup.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { exists } from "../../../src/common/fs.js";
import { silentLogger } from "../../../src/common/log.js";
import type { OciProcess, OciSpec } from "../../../src/common/oci-spec.js";
import type { Digest } from "../../../src/image/digest.js";
import type { RootfsLayers } from "../../../src/image/types.js";
import type { PodSandbox } from "../../../src/sandbox/controller.js";
import { readAll } from "../../../src/sandbox/process-io.js";
import { RuncController, type RuncPod } from "../../../src/sandbox/runc/controller.js";
import type { PodConfig } from "../../../src/sandbox/types.js";
import { makeBusyboxRootfs } from "../../helpers/busybox-rootfs.js";
import { assertNothingLeft } from "../../helpers/leaks.js";

const RUNTIMES = ["/usr/bin/runc", "/usr/bin/crun"];

function proc(args: string[], extra: Partial<OciProcess> = {}): OciProcess {
  return { args, env: ["PATH=/bin", "HOME=/root"], cwd: "/", user: { uid: 0, gid: 0 }, ...extra };
}

function spec(args: string[], extra: { process?: Partial<OciProcess>; memoryLimit?: number } = {}): OciSpec {
  return {
    ociVersion: "1.1.0",
    process: proc(args, { oomScoreAdj: -998, ...extra.process }),
    hostname: "runc-pod",
    mounts: [
      { destination: "/proc", type: "proc", source: "proc" },
      { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
      { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] },
      { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
    ],
    annotations: { "io.kubernetes.cri-o.ContainerType": "container" },
    linux: {
      namespaces: [{ type: "pid" }, { type: "network" }, { type: "ipc" }, { type: "uts" }, { type: "mount" }],
      resources: { devices: [{ allow: false, access: "rwm" }], ...(extra.memoryLimit ? { memory: { limit: extra.memoryLimit, swap: extra.memoryLimit } } : {}) },
      maskedPaths: ["/proc/kcore"],
      readonlyPaths: ["/proc/sys"],
    },
  };
}

function podConfig(name: string): PodConfig {
  return {
    metadata: { name, uid: `uid-${name}`, namespace: "default", attempt: 0 },
    hostname: name,
    logDirectory: "/tmp",
    portMappings: [],
    labels: {},
    annotations: {},
    cgroupParent: "",
    namespaces: { network: "POD", pid: "CONTAINER", ipc: "POD" },
    sysctls: {},
    privileged: false,
    supplementalGroups: [],
    readonlyRootfs: false,
  };
}

/** Reads a stream until `pattern` shows, or fails after `ms`. */
async function readUntil(stream: Readable, pattern: RegExp, ms = 10_000): Promise<string> {
  let text = "";
  const deadline = setTimeout(() => stream.emit("error", new Error(`no ${pattern} within ${ms} ms; got ${JSON.stringify(text)}`)), ms);
  try {
    for await (const chunk of stream) {
      text += (chunk as Buffer).toString();
      if (pattern.test(text)) return text;
    }
    throw new Error(`stream ended without ${pattern}; got ${JSON.stringify(text)}`);
  } finally {
    clearTimeout(deadline);
  }
}

/** Gathers a stream's text as it comes, without ending it: `until` waits for a pattern in what came so far. */
function collect(stream: Readable): { until(pattern: RegExp, ms?: number): Promise<string> } {
  let text = "";
  let ended = false;
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const w of waiters) w();
  };
  stream.on("data", (chunk: Buffer) => {
    text += chunk.toString();
    wake();
  });
  stream.once("close", () => {
    ended = true;
    wake();
  });
  return {
    async until(pattern, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!pattern.test(text)) {
        if (ended) throw new Error(`stream ended without ${pattern}; got ${JSON.stringify(text)}`);
        if (Date.now() > deadline) throw new Error(`no ${pattern} within ${ms} ms; got ${JSON.stringify(text)}`);
        await new Promise<void>((resolve) => {
          const done = () => {
            waiters.delete(done);
            clearTimeout(timer);
            resolve();
          };
          const timer = setTimeout(done, 100);
          waiters.add(done);
        });
      }
      return text;
    },
  };
}

/** Resident and proportional set sizes (shared pages divided among their users), KiB. */
async function memoryKiB(pid: number): Promise<{ rss: number; pss: number }> {
  const rollup = await readFile(`/proc/${pid}/smaps_rollup`, "utf8");
  return { rss: Number(/^Rss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0), pss: Number(/^Pss:\s+(\d+)/m.exec(rollup)?.[1] ?? 0) };
}

for (const runtimePath of RUNTIMES) {
  const name = runtimePath.split("/").pop() ?? runtimePath;
  describe(`runc handler with ${name} (real runtime, host namespaces)`, function () {
    this.timeout(120_000);
    let dir: string;
    let stateRoot: string;
    let layer: string;
    let controller: RuncController;
    let pod: PodSandbox | undefined;
    let n = 0;

    before(async function () {
      if (!(await exists(runtimePath))) {
        process.stderr.write(`      ${runtimePath} is not installed (apt-get install ${name}); these tests cannot run\n`);
        this.skip();
      }
      const unified = await readFile("/sys/fs/cgroup/unified/cgroup.controllers", "utf8").catch(() => "");
      if (name === "crun" && unified.trim() !== "") {
        process.stderr.write(`      crun refuses this host's hybrid cgroups (v2 holds controllers: ${unified.trim()}); the crun tests cannot run here\n`);
        this.skip();
      }
      dir = await mkdtemp(join(tmpdir(), "vmpod-runc-"));
      layer = await makeBusyboxRootfs(join(dir, "layer"));
    });

    beforeEach(async () => {
      stateRoot = join(dir, `state-${++n}`);
      controller = new RuncController({ runtimePath, stateRoot, logger: silentLogger });
    });

    afterEach(async () => {
      await pod?.stop();
      pod = undefined;
      await assertNothingLeft(stateRoot);
      await rm(stateRoot, { recursive: true, force: true });
      const cgroups = await readdir("/sys/fs/cgroup/memory/vmpod").catch(() => []);
      assert.deepEqual(
        cgroups.filter((c) => c.startsWith("pod-")),
        [],
        "pod cgroups left",
      );
    });

    after(async () => {
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    async function layers(containerId: string): Promise<RootfsLayers> {
      const upperDir = join(dir, `upper-${n}-${containerId}`);
      const workDir = join(dir, `work-${n}-${containerId}`);
      await mkdir(upperDir);
      await mkdir(workDir);
      return { imageId: "sha256:busybox" as Digest, layers: [{ diffId: "sha256:layer" as Digest, dir: layer }], upperDir, workDir };
    }

    async function newPod(podName = `pod-${n}`): Promise<PodSandbox> {
      pod = await controller.create({ id: podName, config: podConfig(podName) });
      return pod;
    }

    async function container(p: PodSandbox, id: string, s: OciSpec, options: { stdin?: boolean } = {}) {
      await p.createContainer(id, await layers(id), s, { readonlyRootfs: false });
      const io = p.io(id, "", { stdin: options.stdin ?? false, terminal: s.process?.terminal === true });
      await p.startContainer(id);
      return io;
    }

    it("runs a container in the pod's namespaces: output, stderr, exit code", async () => {
      const p = await newPod();
      const io = await container(p, "c1", spec(["sh", "-c", "echo hello from $(hostname); readlink /proc/self/ns/net; echo oops >&2; exit 3"]));
      const [out, err, code] = await Promise.all([readAll(io.stdout), readAll(io.stderr as Readable), p.wait("c1", "")]);
      const netIno = (await stat((p as RuncPod).namespacePaths.network)).ino;
      assert.equal(out, `hello from pod-${n}\nnet:[${netIno}]\n`);
      assert.equal(err, "oops\n");
      assert.equal(code, 3);
      assert.equal(await p.oomKilled("c1"), false);
      await p.removeContainer("c1", 0);
    });

    it("takes input on the first process's stdin", async () => {
      const p = await newPod();
      const io = await container(p, "cat", spec(["sh", "-c", "read line; echo got $line"]), { stdin: true });
      io.stdin?.end("a line\n");
      assert.equal(await readAll(io.stdout), "got a line\n");
      assert.equal(await io.wait(), 0);
    });

    it("execs with pipes, with a terminal, and kills", async () => {
      const p = await newPod();
      await container(p, "c1", spec(["sleep", "1000"]));
      const ex = await p.exec("c1", "e1", proc(["sh", "-c", "echo in $(hostname); echo err >&2; exit 5"]), { stdin: false });
      assert.deepEqual(await Promise.all([readAll(ex.stdout), readAll(ex.stderr as Readable), ex.wait()]), [`in pod-${n}\n`, "err\n", 5]);

      // The size the process is made with is there from its first instruction on.
      for (let i = 0; i < 3; i++) {
        const sized = await p.exec("c1", `s${i}`, proc(["stty", "size"], { terminal: true, consoleSize: { height: 33, width: 101 } }), { stdin: false });
        // (A process that writes at once may still meet vmpod's side of the terminal before it is
        // raw, which turns its \r\n into \r\r\n: cosmetic, and known.)
        assert.match(await readAll(sized.stdout), /^33 101\r?\r\n$/);
        assert.equal(await sized.wait(), 0);
      }

      const t = await p.exec("c1", "t1", proc(["sh"], { terminal: true }), { stdin: true });
      assert.equal(t.stderr, undefined);
      await t.resize(33, 101);
      const seen = readUntil(t.stdout, /rows 33 cols 101 on \/dev\/pts\/\d+/);
      // A resize reaches the process as SIGWINCH reaches the runtime: a moment later, as in any terminal.
      t.stdin?.write('sleep 0.5; echo rows $(stty size | cut -d" " -f1) cols $(stty size | cut -d" " -f2) on $(tty); exit 7\n');
      await seen;
      assert.equal(await p.wait("c1", "t1"), 7);

      const usage = await p.usage("c1");
      assert.ok(usage.cpuUsageNs > 0n && usage.memoryUsageBytes > 0n && usage.pids >= 1n, JSON.stringify(usage, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v)));
      await p.update("c1", { memory: { limit: 64 * 1024 * 1024 } });
      assert.equal((await p.usage("c1")).memoryLimitBytes, BigInt(64 * 1024 * 1024));

      await p.signal("c1", "", 9);
      assert.equal(await p.wait("c1", ""), 137);
    });

    it("runs a first process with a terminal and input", async () => {
      const p = await newPod();
      const io = await container(p, "t", spec(["sh"], { process: { terminal: true, env: ["PATH=/bin", "TERM=xterm"] } }), { stdin: true });
      assert.equal(io.stderr, undefined);
      const seen = readUntil(io.stdout, /on \/dev\/pts\/\d+/);
      io.stdin?.write("echo on $(tty); exit 6\n");
      await seen;
      assert.equal(await p.wait("t", ""), 6);
      io.stdout.destroy();
    });

    it("resizes the terminal of a first process, also after the daemon is gone, and refuses one without a terminal", async () => {
      const podName = `pod-${n}`;
      let p = await newPod(podName);
      let io = await container(p, "t", spec(["sh"], { process: { terminal: true, env: ["PATH=/bin", "TERM=xterm"] } }), { stdin: true });
      let out = collect(io.stdout);
      await io.resize(33, 101);
      io.stdin?.write("echo size $(stty size)\n");
      await out.until(/size 33 101\r?\n/);

      // The daemon "dies" (its input writer goes once the next one holds the FIFO, or the shell would read EOF); the next one resizes the same terminal.
      io.stdout.destroy();
      const again = new RuncController({ runtimePath, stateRoot, logger: silentLogger });
      const recovered = await again.recover(podName, podConfig(podName));
      assert.ok(recovered, "the pod was not recovered");
      pod = p = recovered;
      const before = io;
      io = p.io("t", "", { stdin: true, terminal: true });
      before.stdin?.destroy();
      out = collect(io.stdout);
      await io.resize(40, 120);
      io.stdin?.write("echo size $(stty size); exit 6\n");
      await out.until(/size 40 120\r?\n/);
      assert.equal(await p.wait("t", ""), 6);
      await io.resize(50, 130);
      io.stdout.destroy();

      const plain = await container(p, "plain", spec(["sleep", "1000"]));
      await assert.rejects(plain.resize(10, 10), (err: unknown) => (err as { kind?: string }).kind === "FailedPrecondition");
      plain.stdout.destroy();
      plain.stderr?.destroy();
    });

    it("stops a container with SIGTERM, then SIGKILL when it ignores it, on removal", async () => {
      const p = await newPod();
      const io = await container(p, "stubborn", spec(["sh", "-c", "trap 'echo ignored' TERM; while true; do sleep 0.1; done"]));
      const t = Date.now();
      await p.removeContainer("stubborn", 1);
      assert.ok(Date.now() - t >= 1000, "removed before the timeout");
      io.stdout.destroy();
      io.stderr?.destroy();
      await assert.rejects(p.wait("stubborn", ""), (err: unknown) => (err as { kind?: string }).kind === "NotFound");
      const created = await p.createContainer("never", await layers("never"), spec(["true"]), { readonlyRootfs: false }).then(() => "never");
      await p.removeContainer(created, 0);
    });

    it("reaches a port on the pod's loopback", async () => {
      const p = await newPod();
      await container(p, "srv", spec(["nc", "-l", "-p", "8080", "-e", "echo", "hello", "port"]));
      let sock;
      for (let i = 0; ; i++) {
        // The listener may not be up yet: a refused connection ends the stream with an error.
        sock = await p.openPort(8080);
        const got = await readAll(sock).catch(() => "");
        if (got === "hello port\n") break;
        if (i > 50) assert.fail(`no answer from the pod's port: ${JSON.stringify(got)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await p.wait("srv", ""), 0);
    });

    if (name === "runc") {
      it("reports a container its memory limit killed", async () => {
        const p = await newPod();
        const io = await container(p, "hog", spec(["sh", "-c", "exec dd if=/dev/zero of=/dev/null bs=64M count=1"], { memoryLimit: 32 * 1024 * 1024 }));
        assert.equal(await p.wait("hog", ""), 137);
        assert.equal(await p.oomKilled("hog"), true);
        io.stdout.destroy();
        io.stderr?.destroy();
      });
    }

    it("recovers a pod after the daemon is gone: running containers go on, exits meanwhile are reported", async () => {
      const podName = `pod-${n}`;
      let p = await newPod(podName);
      const io = await container(p, "ticker", spec(["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"]));
      const io2 = await container(p, "short", spec(["sh", "-c", "sleep 1; echo bye; exit 4"]));
      const before = await readUntil(io.stdout, /tick 3\n/);
      // The daemon "dies": its streams and objects are dropped, nothing is stopped.
      io.stdout.destroy();
      io.stderr?.destroy();
      io2.stdout.destroy();
      io2.stderr?.destroy();
      await new Promise((r) => setTimeout(r, 2_000));

      const again = new RuncController({ runtimePath, stateRoot, logger: silentLogger });
      const recovered = await again.recover(podName, podConfig(podName));
      assert.ok(recovered, "the pod was not recovered");
      pod = p = recovered;
      assert.equal(await p.wait("short", ""), 4);
      assert.equal(await readAll(p.io("short", "", { stdin: false, terminal: false }).stdout), "bye\n");
      const after = p.io("ticker", "", { stdin: false, terminal: false });
      const text = await readUntil(after.stdout, /tick 30\n/);
      // The output goes on where the first reader left it: nothing lost, at most the unsaved tail repeated.
      const firstSeen = Number(/^tick (\d+)/.exec(text)?.[1]);
      const lastBefore = Number([...before.matchAll(/tick (\d+)/g)].pop()?.[1]);
      assert.ok(firstSeen <= lastBefore + 1, `resumed at tick ${firstSeen} after tick ${lastBefore}`);
      const ex = await p.exec("ticker", "e", proc(["echo", "still here"]), { stdin: false });
      assert.equal(await readAll(ex.stdout), "still here\n");
      after.stdout.destroy();
      after.stderr?.destroy();
    });

    it("measures a supervised container's memory (4 idle containers)", async () => {
      const p = await newPod();
      const ids = ["idle1", "idle2", "idle3", "idle4"];
      for (const id of ids) await container(p, id, spec(["sleep", "1000"]));
      const sh = { rss: 0, pss: 0 };
      const runtime = { rss: 0, pss: 0 };
      for (const id of ids) {
        const cdir = join(stateRoot, `pod-${n}`, "containers", id);
        const supervisor = Number((await readFile(join(cdir, "supervisor.pid"), "utf8")).trim());
        const children = (await readFile(`/proc/${supervisor}/task/${supervisor}/children`, "utf8")).trim().split(/\s+/).map(Number);
        const s = await memoryKiB(supervisor);
        sh.rss += s.rss;
        sh.pss += s.pss;
        for (const c of children) {
          const m = await memoryKiB(c);
          runtime.rss += m.rss;
          runtime.pss += m.pss;
        }
      }
      const per = (x: number) => Math.round(x / ids.length);
      process.stderr.write(
        `      per container: supervisor sh ${per(sh.rss)} KiB RSS / ${per(sh.pss)} KiB PSS; ${name} in the foreground ${per(runtime.rss)} KiB RSS / ${per(runtime.pss)} KiB PSS\n`,
      );
      assert.ok(sh.rss > 0 && runtime.rss > 0);
    });
  });
}
