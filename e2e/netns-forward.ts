/**
 * Makes a TCP port on the test's loopback reachable at the same address
 * inside a network namespace, without any link between the two: a listener
 * in the namespace passes each connection over a unix socket (the file
 * system is shared) to the test process, which connects to the port.
 */
import { spawn } from "node:child_process";
import { rm } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";

export interface Forward {
  close(): Promise<void>;
}

export async function forwardIntoNetns(netns: string, port: number, dir: string): Promise<Forward> {
  const socketPath = join(dir, `forward-${port}.sock`);
  const relay = net.createServer((c) => {
    const upstream = net.connect(port, "127.0.0.1");
    c.pipe(upstream).pipe(c);
    c.on("error", () => upstream.destroy());
    upstream.on("error", () => c.destroy());
  });
  await new Promise<void>((resolve, reject) => relay.once("error", reject).listen(socketPath, resolve));
  const script = `
    const net = require("node:net");
    net.createServer((c) => {
      const u = net.connect(${JSON.stringify(socketPath)});
      c.pipe(u).pipe(c);
      c.on("error", () => u.destroy());
      u.on("error", () => c.destroy());
    }).listen(${port}, "127.0.0.1", () => process.stdout.write("ready\\n"));`;
  const child = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the forwarder in ${netns} exited with ${code}`)));
    child.stdout?.once("data", () => resolve());
  });
  return {
    async close() {
      child.removeAllListeners("exit");
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGKILL");
        await exited;
      }
      await new Promise<void>((resolve) => relay.close(() => resolve()));
      await rm(socketPath, { force: true });
    },
  };
}
