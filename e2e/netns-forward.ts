/**
 * TCP between the test's network namespace and one standing for the node,
 * without any link between the two: a listener on one side passes each
 * connection over a unix socket (the file system is shared) to a relay on
 * the other, which connects to the port.
 *
 * - `forwardIntoNetns`: a port on the test's loopback reachable at the same
 *   address inside the namespace (the registry, for the daemon there).
 * - `reachFromTest`: a URL served inside the namespace (the daemon's
 *   streaming server) reachable from the test, at a URL it returns.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { rm } from "node:fs/promises";
import net from "node:net";
import { join } from "node:path";

export interface Forward {
  close(): Promise<void>;
}

export async function forwardIntoNetns(netns: string, port: number, dir: string): Promise<Forward> {
  const socketPath = join(dir, `forward-${port}.sock`);
  const local = net.createServer((c) => pipeBoth(c, net.connect(port, "127.0.0.1")));
  await new Promise<void>((resolve, reject) => local.once("error", reject).listen(socketPath, resolve));
  const child = await relayInNetns(netns, `[${port}, "127.0.0.1"]`, `[${JSON.stringify(socketPath)}]`);
  return { close: () => closeBoth(child, local, socketPath) };
}

export async function reachFromTest(netns: string, url: string, dir: string): Promise<Forward & { readonly url: string }> {
  const target = new URL(url);
  const socketPath = join(dir, `relay-${target.port}.sock`);
  const child = await relayInNetns(netns, `[${JSON.stringify(socketPath)}]`, `[${Number(target.port)}, ${JSON.stringify(target.hostname)}]`);
  const local = net.createServer((c) => pipeBoth(c, net.connect(socketPath)));
  await new Promise<void>((resolve, reject) => local.once("error", reject).listen(0, "127.0.0.1", resolve));
  const relayed = new URL(url);
  relayed.host = `127.0.0.1:${(local.address() as net.AddressInfo).port}`;
  return { url: relayed.toString(), close: () => closeBoth(child, local, socketPath) };
}

/** Joins two connections both ways; an error on either ends the other. */
function pipeBoth(a: net.Socket, b: net.Socket): void {
  a.pipe(b).pipe(a);
  a.on("error", () => b.destroy());
  b.on("error", () => a.destroy());
}

/** A node process in `netns` listening with `listenArgs` and connecting each connection with `connectArgs` (JSON arrays). */
async function relayInNetns(netns: string, listenArgs: string, connectArgs: string): Promise<ChildProcess> {
  const script = `
    const net = require("node:net");
    net.createServer((c) => {
      const u = net.connect(...${connectArgs});
      c.pipe(u).pipe(c);
      c.on("error", () => u.destroy());
      u.on("error", () => c.destroy());
    }).listen(...${listenArgs}, () => process.stdout.write("ready\\n"));`;
  const child = spawn("ip", ["netns", "exec", netns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  await new Promise<void>((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the relay in ${netns} exited with ${code}`)));
    child.stdout?.once("data", () => resolve());
  });
  return child;
}

async function closeBoth(child: ChildProcess, local: net.Server, socketPath: string): Promise<void> {
  child.removeAllListeners("exit");
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
  await new Promise<void>((resolve) => local.close(() => resolve()));
  await rm(socketPath, { force: true });
}
