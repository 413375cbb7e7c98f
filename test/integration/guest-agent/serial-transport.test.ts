/**
 * The virtio-serial transport, end to end over a stand-in: the port's
 * sysfs name file and device node are faked in a temporary directory, the
 * device being the slave of a pty in raw mode (a character device, as a
 * virtio port is) whose master plays the host.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { closeSync, readlinkSync, write } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex } from "node:stream";
import tty from "node:tty";
import koffi from "koffi";
import { TtrpcClient } from "../../../src/agent/ttrpc/client.js";
import { unary } from "../../../src/agent/ttrpc/typed.js";
import { AgentService, Health, HealthCheckResponse_ServingStatus } from "../../../src/gen/agent_pb.js";
import { spawnAgent, type SpawnedAgent } from "./harness.js";

const openpty = koffi.load("libc.so.6").func("int openpty(_Out_ int *master, _Out_ int *slave, void *name, void *termp, void *winp)");

describe("guest agent: virtio-serial transport", function () {
  let dir: string;
  let agent: SpawnedAgent | undefined;
  let master = -1;
  let reader: tty.ReadStream | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-serial-"));
  });

  afterEach(async function () {
    if (this.currentTest?.state === "failed" && agent) process.stderr.write(`--- agent log ---\n${agent.log()}\n`);
    agent?.process.kill("SIGKILL");
    await agent?.exited;
    reader?.destroy();
    await rm(dir, { recursive: true, force: true });
  });

  it("finds the port by name, waits for it, and serves ttRPC on it", async () => {
    const m = [0];
    const s = [0];
    assert.equal(openpty(m, s, null, null, null), 0);
    master = m[0] as number;
    const slave = s[0] as number;
    const slavePath = readlinkSync(`/proc/self/fd/${slave}`);
    execFileSync("stty", ["-F", slavePath, "raw", "-echo"]);

    const ports = join(dir, "virtio-ports");
    const dev = join(dir, "dev");
    await mkdir(dev);
    await symlink(slavePath, join(dev, "vport1p1"));
    agent = await spawnAgent([
      "--listen", "serial:agent.channel.0", "--virtio-ports-dir", ports, "--dev-dir", dev, "--state-dir", join(dir, "state"), "--log-level", "debug",
      "--resolv-conf", join(dir, "resolv.conf"), "--hostname-file", join(dir, "hostname"),
    ]);
    // The port appears after the agent has started looking for it; another port is there first.
    await mkdir(join(ports, "vport0p1"), { recursive: true });
    await writeFile(join(ports, "vport0p1", "name"), "org.qemu.guest_agent.0\n");
    await new Promise((r) => setTimeout(r, 300));
    await mkdir(join(ports, "vport1p1"));
    await writeFile(join(ports, "vport1p1", "name"), "agent.channel.0\n");
    closeSync(slave);

    reader = new tty.ReadStream(master);
    reader.on("error", () => undefined); // EIO once the agent, holding the slave, is killed
    const host = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, callback) {
        write(master, chunk, (err) => callback(err));
      },
    });
    reader.on("data", (chunk: Buffer) => host.push(chunk));
    const client = new TtrpcClient(host);
    assert.equal((await unary(client, Health.method.check, {})).status, HealthCheckResponse_ServingStatus.SERVING);
    const details = await unary(client, AgentService.method.getGuestDetails, {});
    assert.equal(details.agentDetails?.version, "0.1.0");
    // Several calls in flight at once share the port.
    const many = await Promise.all(Array.from({ length: 20 }, () => unary(client, Health.method.version, {})));
    assert.equal(many.length, 20);
    assert.match(agent.log(), /"msg":"agent listening".*serial:agent\.channel\.0/);
    client.close();
  });
});
