/**
 * The pod network's last hop for real: a guest VM (the built image, its
 * agent) booted with a virtio-net card on a tap that QEMU inherits as a
 * descriptor, as vmpod launches it (the command line from buildQemuArgs, the
 * descriptors from passedFds); the tap lives in a network namespace the test
 * makes and stands for the pod's host side. The host's agent client
 * configures the guest's NIC by its MAC, and pings from the namespace reach
 * the guest, from its subnet and from beyond its default routes.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS } from "../../../guest/build/index.js";
import type { AgentClient } from "../../../src/agent/client.js";
import { connectAgent } from "../../../src/agent/connect.js";
import { UnixSocketTransport } from "../../../src/agent/transport.js";
import { run } from "../../../src/common/exec.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { chooseAccel, hostTscKhz } from "../../../src/hypervisor/accel.js";
import { buildQemuArgs, passedFds } from "../../../src/hypervisor/qemu-args.js";
import { vmSpecFromConfig } from "../../../src/hypervisor/spec-from-config.js";
import { validateSpec, type VmSpec } from "../../../src/hypervisor/spec.js";
import { processesMentioning } from "../../helpers/leaks.js";
import { guestImage } from "../../helpers/vm-fixture.js";
import { openTapIn } from "./tap.js";

const MAC = "52:54:00:6e:00:02";

for (const machine of ["microvm", "q35"] as const) {
  describe(`guest network in a ${machine} VM`, function () {
    this.timeout(300_000);
    const tag = randomBytes(3).toString("hex");
    const ns = `vmpod-gv-${tag}`;
    const tapName = `gvt${tag}`;
    let runDir: string;
    let qemu: ChildProcess | undefined;
    let exited: Promise<void> = Promise.resolve();
    let stderr = "";
    let client: AgentClient | undefined;
    let spec: VmSpec;

    const inNs = (...args: string[]) => run("ip", ["netns", "exec", ns, ...args]);
    const ping = (...args: string[]) => inNs("busybox", "ping", "-c", "1", "-W", "10", ...args);

    before(async () => {
      const image = await guestImage();
      runDir = await mkdtemp(join(tmpdir(), "vmpod-gv-"));
      await run("ip", ["netns", "add", ns]);
      const tapFd = openTapIn(`/run/netns/${ns}`, tapName);
      try {
        for (const args of [
          ["addr", "add", "10.214.0.1/24", "dev", tapName],
          ["addr", "add", "fd00:214::1/64", "dev", tapName, "nodad"],
          // Sources off the guest's subnets: its replies to them take its default routes.
          ["addr", "add", "192.0.2.7/32", "dev", "lo"],
          ["addr", "add", "2001:db8::7/128", "dev", "lo"],
          ["link", "set", "lo", "up"],
          ["link", "set", tapName, "up"],
        ]) {
          await run("ip", ["-n", ns, ...args]);
        }
        const config = { ...defaultConfig(image.dir).hypervisor, machineType: machine };
        const tscKhz = await hostTscKhz();
        spec = {
          ...vmSpecFromConfig(config, {
            id: `gv${tag}`,
            runDir,
            accel: (await chooseAccel(config.accel)).accel,
            ...(tscKhz === undefined ? {} : { tscKhz }),
            kernelParams: BASE_KERNEL_PARAMS,
          }),
          network: { nics: [{ id: "net0", mac: MAC, tapFd }] },
        };
        validateSpec(spec);
        // As the launcher does: the spec's taps become QEMU's descriptors 3, 4, ...
        const child = spawn(spec.qemuPath, buildQemuArgs(spec), { stdio: ["ignore", "ignore", "pipe", ...passedFds(spec)] });
        qemu = child;
        child.stderr?.on("data", (b: Buffer) => (stderr += b.toString()));
        exited = new Promise((resolve) => child.once("exit", () => resolve()));
      } finally {
        // QEMU holds its own copy; the tap goes when QEMU does.
        closeSync(tapFd);
      }
      const agent = spec.agent;
      assert.ok(agent);
      client = await connectAgent(new UnixSocketTransport(agent.socketPath), { timeoutMs: 180_000, callTimeoutMs: 60_000 });
    });

    afterEach(async function () {
      if (this.currentTest?.state !== "failed") return;
      const console = await readFile(spec.consoleLog, "utf8").catch(() => "");
      process.stderr.write(`--- console ---\n${console.slice(-8000)}\n--- qemu stderr ---\n${stderr}\n`);
    });

    after(async () => {
      client?.close();
      qemu?.kill("SIGKILL");
      await exited;
      await run("ip", ["netns", "del", ns]).catch(() => undefined);
      if (runDir !== undefined) {
        assert.deepEqual(await processesMentioning(runDir), [], "QEMU left running");
        await rm(runDir, { recursive: true, force: true });
      }
      assert.ok(!(await run("ip", ["netns", "list"])).stdout.includes(ns), `netns ${ns} left behind`);
    });

    it("gets the pod's addresses and routes from the agent, and answers pings over IPv4 and IPv6", async () => {
      assert.ok(client);
      const nic = await client.updateInterface({
        name: "eth0",
        mac: MAC,
        mtu: 1400,
        addresses: [
          { family: 4, address: "10.214.0.2", prefixLength: 24 },
          { family: 6, address: "fd00:214::2", prefixLength: 64 },
        ],
      });
      assert.deepEqual(
        { name: nic.name, mac: nic.mac, mtu: nic.mtu, up: nic.up },
        { name: "eth0", mac: MAC, mtu: 1400, up: true },
      );
      await client.updateRoutes([
        { family: 4, destination: "0.0.0.0/0", gateway: "10.214.0.1", device: "eth0" },
        { family: 6, destination: "::/0", gateway: "fd00:214::1", device: "eth0" },
      ]);
      const routes = await client.listRoutes();
      assert.ok(routes.some((r) => r.destination === "0.0.0.0/0" && r.gateway === "10.214.0.1" && r.device === "eth0"), JSON.stringify(routes));

      await ping("10.214.0.2");
      await ping("-6", "fd00:214::2");
      await ping("-I", "192.0.2.7", "10.214.0.2");
      await ping("-6", "-I", "2001:db8::7", "fd00:214::2");

      // The guest kept nothing of its own: no address but the pod's (and IPv6 link-local), no DHCP.
      const listed = await client.listInterfaces();
      assert.deepEqual(
        listed.map((i) => i.name).sort(),
        ["eth0", "lo"],
      );
      const eth0 = listed.find((i) => i.name === "eth0");
      assert.deepEqual(
        eth0?.addresses.filter((a) => !a.address.startsWith("fe80:")).map((a) => `${a.address}/${a.prefixLength}`),
        ["10.214.0.2/24", "fd00:214::2/64"],
      );
    });
  });
}
