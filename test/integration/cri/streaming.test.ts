/**
 * The streaming server with real clients on loopback: the project's SPDY
 * and WebSocket test clients run exec, attach and port-forward against a
 * fake runtime whose port forwarding reaches a real TCP echo server.
 */
import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { spawn } from "node:child_process";
import { closeSync, existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { once } from "node:events";
import tty from "node:tty";
import { silentLogger } from "../../../src/common/log.js";
import { StreamingServer } from "../../../src/cri/streaming/server.js";
import { openPty, setWindowSize } from "../../../src/sandbox/runc/libc.js";
import { startFakeCri } from "../../helpers/streaming/fake-cri.js";
import { FakeRuntime, startEchoServer } from "../../helpers/streaming/fake-runtime.js";
import { UpgradeRefused, connectSpdy, forwardOnce, runSpdyCommand } from "../../helpers/streaming/spdy-client.js";
import { runWsCommand, wsForward } from "../../helpers/streaming/ws-client.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string | (() => string), ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${typeof what === "string" ? what : what()}`);
    await sleep(10);
  }
}

function execRequest(command: string[], flags: Partial<{ tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }> = {}) {
  return { containerId: "c1", command, tty: false, stdin: false, stdout: true, stderr: true, ...flags };
}

function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

describe("streaming server (real clients on loopback)", function () {
  this.timeout(30_000);
  let runtime: FakeRuntime;
  let server: StreamingServer;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let baseline: Map<string, number>;

  beforeEach(async () => {
    baseline = resources();
    runtime = new FakeRuntime();
    echo = await startEchoServer();
    runtime.portMap.set(8080, echo.port);
    server = new StreamingServer({ address: "127.0.0.1:0", runtime, logger: silentLogger, tokenTtlMs: 2_000, streamCreationTimeoutMs: 2_000 });
    await server.start();
  });

  afterEach(async () => {
    // Every session ended by itself; closing the server finds nothing left.
    await waitFor(() => server.sessionCount === 0, "sessions to end");
    await waitFor(() => runtime.connections.size === 0 && echo.connections() === 0, "pod connections to close");
    await server.close();
    await server.close();
    await echo.close();
    await waitFor(() => {
      const now = resources();
      // (Timers are not compared: mocha's own test timer shows up as one.)
      return ["TCPSocketWrap", "TCPServerWrap"].every((k) => (now.get(k) ?? 0) <= (baseline.get(k) ?? 0));
    }, () => `sockets and servers to be released: ${JSON.stringify([...resources()])}, before: ${JSON.stringify([...baseline])}`);
  });

  describe("SPDY/3.1", () => {
    it("runs exec without a terminal: stdout, stderr and a v4 Success status", async () => {
      const url = server.execUrl(execRequest(["echo", "hello", "world"]));
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
      const result = await runSpdyCommand(url);
      assert.equal(result.protocol, "v4.channel.k8s.io");
      assert.equal(result.stdout, "hello world\n");
      assert.equal(result.stderr, "to stderr\n");
      assert.deepEqual(JSON.parse(result.error), { metadata: {}, status: "Success" });
      assert.deepEqual(runtime.execs[0], { id: "c1", command: ["echo", "hello", "world"], tty: false, streams: ["stderr", "stdout"] });
    });

    it("echoes stdin through cat until the client closes it", async () => {
      const url = server.execUrl(execRequest(["cat"], { stdin: true }));
      const result = await runSpdyCommand(url, { stdin: "line one\nline two\n", holdStdin: sleep(50) });
      assert.equal(result.stdout, "line one\nline two\n");
      assert.deepEqual(JSON.parse(result.error), { metadata: {}, status: "Success" });
    });

    it("reports a non-zero exit as v4 Failure with the exit code, and as text to v3 clients", async () => {
      const v4 = await runSpdyCommand(server.execUrl(execRequest(["exit", "3"])));
      assert.equal(v4.stderr, "exiting\n");
      assert.deepEqual(JSON.parse(v4.error), {
        metadata: {},
        status: "Failure",
        message: "command terminated with non-zero exit code: error executing command [exit 3], exit code 3",
        reason: "NonZeroExitCode",
        details: { causes: [{ reason: "ExitCode", message: "3" }] },
      });
      const v3 = await runSpdyCommand(server.execUrl(execRequest(["exit", "5"])), { protocols: ["v3.channel.k8s.io"] });
      assert.equal(v3.protocol, "v3.channel.k8s.io");
      assert.equal(v3.error, "command terminated with non-zero exit code: exit code 5");
    });

    it("turns a runtime error into an InternalError status", async () => {
      const result = await runSpdyCommand(server.execUrl(execRequest(["fail"])));
      const status = JSON.parse(result.error) as { status: string; reason: string; message: string };
      assert.equal(status.status, "Failure");
      assert.equal(status.reason, "InternalError");
      assert.match(status.message, /container c1 not found/);
    });

    it("runs exec with a terminal: no stderr stream, resizes reach the runtime", async () => {
      const url = server.execUrl(execRequest(["resize"], { tty: true, stdin: true, stderr: false }));
      const result = await runSpdyCommand(url, {
        tty: true,
        stdin: "",
        holdStdin: waitFor(() => runtime.resizes.length === 2, "resizes"),
        resizes: [{ Width: 80, Height: 24 }, { Width: 132, Height: 43 }],
      });
      assert.deepEqual(runtime.resizes, [{ width: 80, height: 24 }, { width: 132, height: 43 }]);
      assert.equal(result.stdout, "80x24\n132x43\n");
      assert.deepEqual(runtime.execs[0]?.streams, ["resize", "stdin", "stdout"]);
      assert.equal(runtime.execs[0]?.tty, true);
    });

    it("attaches to the container's process", async () => {
      const url = server.attachUrl({ containerId: "c2", tty: false, stdin: true, stdout: true, stderr: false });
      assert.match(url, /\/attach\//);
      const result = await runSpdyCommand(url, { stdin: "typed\n", stderr: false });
      assert.equal(result.stdout, "attached\ntyped\n");
      assert.deepEqual(JSON.parse(result.error), { metadata: {}, status: "Success" });
      assert.equal(runtime.attaches[0]?.id, "c2");
    });

    it("moves 4 MiB of output to a client that ignores flow control, and holds back for a slow one that keeps it", async () => {
      const size = 4 * 1024 * 1024;
      const fast = await runSpdyCommand(server.execUrl(execRequest(["bulk", String(size)], { stderr: false })), { stderr: false });
      assert.equal(fast.stdoutBytes, size);
      // A client keeping flow control that does not read yet: the runtime's writes stop at about one window.
      let startReading!: () => void;
      const slow = runSpdyCommand(server.execUrl(execRequest(["bulk", String(1024 * 1024)], { stderr: false })), {
        stderr: false,
        flowControl: true,
        holdReading: new Promise<void>((r) => (startReading = r)),
      });
      await waitFor(() => runtime.bulkWritten >= 64 * 1024, "a window's worth of output");
      await sleep(300);
      const ahead = runtime.bulkWritten;
      startReading();
      const result = await slow;
      assert.ok(ahead <= 128 * 1024, `runtime wrote ${ahead} bytes to a client that read nothing`);
      assert.equal(result.stdoutBytes, 1024 * 1024);
    });

    it("forwards ports: several connections on one session, both ways, and errors on the error stream", async () => {
      const url = server.portForwardUrl({ podId: "p1", ports: [] });
      assert.match(url, /\/portforward\//);
      const conn = await connectSpdy(url, ["portforward.k8s.io"]);
      assert.equal(conn.protocol, "portforward.k8s.io");
      const [a, b] = await Promise.all([forwardOnce(conn.session, "0", 8080, "hello"), forwardOnce(conn.session, "1", 8080, "x".repeat(200_000))]);
      assert.deepEqual(a, { data: "HELLO", error: "" });
      assert.equal(b.data, "X".repeat(200_000));
      const bad = await forwardOnce(conn.session, "2", 9999, "?");
      assert.equal(bad.data, "");
      assert.match(bad.error, /error forwarding port 9999 to pod p1: nothing listens on port 9999/);
      assert.deepEqual(runtime.forwards, [{ podId: "p1", port: 8080 }, { podId: "p1", port: 8080 }, { podId: "p1", port: 9999 }]);
      conn.session.destroy();
      await conn.session.closed;
    });

    it("refuses a port the request did not name", async () => {
      const conn = await connectSpdy(server.portForwardUrl({ podId: "p1", ports: [8080] }), ["portforward.k8s.io"]);
      const bad = await forwardOnce(conn.session, "0", 22, "?");
      assert.match(bad.error, /port 22 was not named/);
      conn.session.destroy();
      await conn.session.closed;
    });
  });

  describe("URLs and handshakes", () => {
    it("answers 404 to a used, expired or unknown token", async () => {
      const url = server.execUrl(execRequest(["echo"]));
      await runSpdyCommand(url);
      await assert.rejects(connectSpdy(url, ["v4.channel.k8s.io"]), (err: unknown) => err instanceof UpgradeRefused && err.status === 404);
      const stale = server.execUrl(execRequest(["echo"]));
      await sleep(2_100);
      await assert.rejects(connectSpdy(stale, ["v4.channel.k8s.io"]), (err: unknown) => err instanceof UpgradeRefused && err.status === 404);
      await assert.rejects(connectSpdy(`${server.url}/exec/AAAAAAAAAAAAAAAAAAAAAA`, []), (err: unknown) => err instanceof UpgradeRefused && err.status === 404);
      // A token for exec does not open an attach.
      const token = server.execUrl(execRequest(["echo"])).split("/").pop()!;
      await assert.rejects(connectSpdy(`${server.url}/attach/${token}`, []), (err: unknown) => err instanceof UpgradeRefused && err.status === 404);
    });

    it("refuses a client sharing no protocol with 403 and the accepted list", async () => {
      const url = server.execUrl(execRequest(["echo"]));
      await assert.rejects(connectSpdy(url, ["v9.channel.k8s.io"]), (err: unknown) => {
        assert.ok(err instanceof UpgradeRefused);
        assert.equal(err.status, 403);
        assert.equal(err.headers["x-accepted-stream-protocol-versions"], "v4.channel.k8s.io, v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io");
        return true;
      });
    });

    it("asks a plain GET to upgrade, without using up the token", async () => {
      const url = server.execUrl(execRequest(["echo", "ok"]));
      const status = await new Promise<number>((resolve, reject) => http.get(url, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on("error", reject));
      assert.equal(status, 400);
      assert.equal((await runSpdyCommand(url)).stdout, "ok\n");
    });

    it("drops a client that never opens its streams", async () => {
      const conn = await connectSpdy(server.execUrl(execRequest(["echo"])), ["v4.channel.k8s.io"]);
      await conn.session.closed;
      assert.equal(runtime.execs.length, 0);
    });

    it("ends live sessions on close", async () => {
      const url = server.execUrl(execRequest(["cat"], { stdin: true }));
      let release!: () => void;
      const running = runSpdyCommand(url, { stdin: "x", holdStdin: new Promise<void>((r) => (release = r)) }).catch((err: unknown) => err);
      await waitFor(() => runtime.execs.length === 1, "the exec to start");
      assert.equal(server.sessionCount, 1);
      await server.close();
      assert.equal(server.sessionCount, 0);
      release();
      await running;
      assert.throws(() => server.execUrl(execRequest(["echo"])), /closed/);
    });
  });

  describe("WebSocket", () => {
    it("runs exec over v5 with stdin closed by the close signal", async () => {
      const result = await runWsCommand(server.execUrl(execRequest(["cat"], { stdin: true })), { stdin: "over websocket\n", holdStdin: sleep(30) });
      assert.equal(result.protocol, "v5.channel.k8s.io");
      assert.equal(result.channels.get(1), "over websocket\n");
      assert.deepEqual(JSON.parse(result.channels.get(3)!), { metadata: {}, status: "Success" });
      assert.equal(result.closeCode, 1000);
    });

    it("runs exec over v4 with stdout, stderr and a Failure status", async () => {
      const result = await runWsCommand(server.execUrl(execRequest(["exit", "7"])), { protocols: ["v4.channel.k8s.io"] });
      assert.equal(result.protocol, "v4.channel.k8s.io");
      assert.equal(result.channels.get(2), "exiting\n");
      const status = JSON.parse(result.channels.get(3)!) as { reason: string; details: { causes: { reason: string; message: string }[] } };
      assert.equal(status.reason, "NonZeroExitCode");
      assert.deepEqual(status.details.causes, [{ reason: "ExitCode", message: "7" }]);
    });

    it("speaks base64.channel.k8s.io", async () => {
      const result = await runWsCommand(server.execUrl(execRequest(["echo", "b64"])), { protocols: ["base64.channel.k8s.io"] });
      assert.equal(result.protocol, "base64.channel.k8s.io");
      assert.equal(result.channels.get(1), "b64\n");
      assert.equal(result.channels.get(2), "to stderr\n");
    });

    it("delivers terminal resizes", async () => {
      const result = await runWsCommand(server.execUrl(execRequest(["resize"], { tty: true, stdin: true, stderr: false })), {
        stdin: "",
        resizes: [{ Width: 100, Height: 30 }],
        holdStdin: waitFor(() => runtime.resizes.length === 1, "the resize"),
      });
      assert.deepEqual(runtime.resizes, [{ width: 100, height: 30 }]);
      assert.equal(result.channels.get(1), "100x30\n");
    });

    it("forwards ports with port-prefixed channel pairs", async () => {
      runtime.portMap.set(8081, echo.port);
      const url = server.portForwardUrl({ podId: "p1", ports: [] });
      const result = await wsForward(url, [8080, 8081], "abc");
      assert.deepEqual(result.data[0], Buffer.concat([Buffer.from([0x90, 0x1f]), Buffer.from("ABC")]));
      assert.deepEqual(result.data[1], Buffer.concat([Buffer.from([0x91, 0x1f]), Buffer.from("ABC")]));
      assert.deepEqual(result.errors[0], Buffer.from([0x90, 0x1f]));
      const failing = await wsForward(server.portForwardUrl({ podId: "p1", ports: [] }), [7000], "abc");
      assert.match(failing.errors[0]!.subarray(2).toString(), /error forwarding port 7000 to pod p1/);
    });
  });

  /**
   * The real peer: crictl v1.29 (Kubernetes' client library, SPDY) built from
   * cri-tools outside the repository; CRICTL names the binary.
   */
  describe("crictl", () => {
    const crictl = process.env.CRICTL ?? "/work/tools/crictl/bin/crictl";
    let dir: string;
    let cri: { close(): Promise<void> };

    before(function () {
      if (!existsSync(crictl)) {
        console.log(`    (skipped: no crictl at ${crictl}; build cri-tools v1.29.0 and set CRICTL)`);
        this.skip();
      }
    });

    beforeEach(async () => {
      dir = await mkdtemp(path.join(tmpdir(), "vmpod-streaming-"));
      cri = await startFakeCri(path.join(dir, "cri.sock"), server);
    });

    afterEach(async () => {
      await cri.close();
      await rm(dir, { recursive: true, force: true });
    });

    function run(args: string[], stdin = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
      const child = spawn(crictl, ["--runtime-endpoint", `unix://${path.join(dir, "cri.sock")}`, "--timeout", "10s", ...args], { stdio: "pipe" });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      child.stdin.end(stdin);
      return new Promise((resolve) => child.once("close", (code) => resolve({ code, stdout, stderr })));
    }

    it("runs exec: output on both streams and a zero exit", async () => {
      const result = await run(["exec", "c1", "echo", "from", "crictl"]);
      assert.equal(result.stdout, "from crictl\n");
      assert.equal(result.stderr, "to stderr\n");
      assert.equal(result.code, 0);
      assert.deepEqual(runtime.execs[0], { id: "c1", command: ["echo", "from", "crictl"], tty: false, streams: ["stderr", "stdout"] });
    });

    it("pipes stdin through exec -i", async () => {
      const big = "0123456789abcdef".repeat(64 * 1024);
      const result = await run(["exec", "-i", "c1", "cat"], big);
      assert.equal(result.code, 0);
      assert.equal(result.stdout.length, big.length);
      assert.equal(result.stdout, big);
    });

    it("reports the exit code of a failed command", async () => {
      const result = await run(["exec", "c1", "exit", "3"]);
      assert.notEqual(result.code, 0);
      assert.match(result.stderr, /exiting/);
      assert.match(result.stderr, /non-zero exit code.*3|exit code 3/);
    });

    /** crictl in a terminal of its own (a pseudoterminal pair of `rows` x `columns`), as an operator runs it. */
    function runInTerminal(args: string[], rows: number, columns: number) {
      const { master, slave } = openPty();
      setWindowSize(master, rows, columns);
      let child;
      try {
        child = spawn(crictl, ["--runtime-endpoint", `unix://${path.join(dir, "cri.sock")}`, "--timeout", "10s", ...args], { stdio: [slave, slave, slave], detached: true });
      } finally {
        closeSync(slave);
      }
      const chunks: Buffer[] = [];
      const reader = new tty.ReadStream(master);
      // EIO once crictl, the last holder of the slave, is gone: the end of its output.
      const ended = new Promise<void>((resolve) => {
        reader.on("error", () => resolve());
        reader.on("close", () => resolve());
      });
      reader.on("data", (c: Buffer) => chunks.push(c));
      const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
      return {
        child,
        output: () => Buffer.concat(chunks),
        resize(r: number, c: number) {
          setWindowSize(master, r, c);
          child.kill("SIGWINCH");
        },
        async done(): Promise<number | null> {
          const code = await exited;
          await Promise.race([ended, sleep(2000)]);
          reader.destroy();
          return code;
        },
      };
    }

    it("runs exec -it in a terminal: the first byte the terminal shows is the command's own", async () => {
      const term = runInTerminal(["exec", "-it", "c1", "echo", "hello"], 33, 101);
      assert.equal(await term.done(), 0);
      // (crictl may print, after it, that its first resize found the session over: the command was quicker.)
      // crictl's own log lines (klog: "E1123 10:00:00.000000 ...") are the client's, not the terminal's output.
      const shown = term.output().toString("latin1").replace(/^[EWI]\d{4} [^\n]*\n/gm, "");
      assert.equal(shown.slice(0, 6), "hello\n", "raw terminal output, nothing before it");
      assert.deepEqual(runtime.execs[0], { id: "c1", command: ["echo", "hello"], tty: true, streams: ["resize", "stdin", "stdout"] });
    });

    it("sends the terminal's size and its changes through exec -it", async () => {
      const term = runInTerminal(["exec", "-it", "c1", "resize"], 33, 101);
      try {
        await waitFor(() => term.output().toString().includes("101x33\n"), () => `the first size: ${JSON.stringify(term.output().toString())}`, 10_000);
        term.resize(40, 120);
        await waitFor(() => term.output().toString().includes("120x40\n"), () => `the new size: ${JSON.stringify(term.output().toString())}`, 10_000);
        assert.equal(term.output()[0], "1".charCodeAt(0), "the first byte is the runtime's first output");
        assert.deepEqual(runtime.resizes.slice(0, 2), [{ width: 101, height: 33 }, { width: 120, height: 40 }]);
      } finally {
        term.child.kill("SIGKILL");
        await term.done();
      }
    });

    it("forwards a local port to the pod", async () => {
      const local = await freePort();
      const child = spawn(crictl, ["--runtime-endpoint", `unix://${path.join(dir, "cri.sock")}`, "port-forward", "p1", `${local}:8080`], { stdio: "pipe" });
      let out = "";
      child.stdout.on("data", (c: Buffer) => (out += c.toString()));
      child.stderr.on("data", (c: Buffer) => (out += c.toString()));
      try {
        await waitFor(() => /Forwarding from/.test(out), () => `crictl to listen: ${out}`, 10_000);
        for (const text of ["first connection", "second one"]) {
          const socket = net.connect(local, "127.0.0.1");
          await once(socket, "connect");
          let back = "";
          socket.on("data", (c: Buffer) => (back += c.toString()));
          socket.write(text);
          await waitFor(() => back.length >= text.length, () => `the echo through crictl (${back})`);
          assert.equal(back, text.toUpperCase());
          socket.end();
          await once(socket, "close");
        }
        assert.deepEqual(runtime.forwards, [{ podId: "p1", port: 8080 }, { podId: "p1", port: 8080 }]);
      } finally {
        child.kill("SIGINT");
        await once(child, "close");
      }
    });
  });
});

async function freePort(): Promise<number> {
  const probe = net.createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const port = (probe.address() as net.AddressInfo).port;
  await new Promise<void>((r) => probe.close(() => r()));
  return port;
}
