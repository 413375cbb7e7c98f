/**
 * A Runtime for streaming tests: exec runs a few scripted commands against
 * the client's streams (cat, echo, exit N, a resize reporter, bulk output),
 * attach echoes, and port forwarding dials a real TCP port on loopback.
 * Everything else is unimplemented: the streaming server must not call it.
 */
import net from "node:net";
import { once } from "node:events";
import type { Duplex, Writable } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import type { ClientStreams, Runtime, TerminalSize } from "../../../src/sandbox/runtime.js";

export interface ExecCall {
  readonly id: string;
  readonly command: readonly string[];
  readonly tty: boolean;
  readonly streams: readonly string[];
}

function unimplemented(): never {
  throw new VmpodError("Unimplemented", "not part of the streaming fake");
}

async function write(out: Writable | undefined, data: string | Buffer): Promise<void> {
  if (!out || out.destroyed) return;
  if (out.write(data)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      out.off("drain", done);
      out.off("close", done);
      resolve();
    };
    out.on("drain", done);
    out.on("close", done);
  });
}

async function copy(from: ClientStreams["stdin"], to: Writable | undefined): Promise<void> {
  if (!from) return;
  for await (const chunk of from) await write(to, chunk as Buffer);
}

export class FakeRuntime implements Runtime {
  readonly handlers = ["vmpod"];
  readonly execs: ExecCall[] = [];
  readonly attaches: ExecCall[] = [];
  readonly resizes: TerminalSize[] = [];
  readonly forwards: { podId: string; port: number }[] = [];
  /** Open pod connections made by portForward. */
  readonly connections = new Set<Duplex>();
  /** Port numbers the client names, mapped to real loopback ports. */
  readonly portMap = new Map<number, number>();
  /** Bytes written by the last `bulk` exec once the client's window let them through. */
  bulkWritten = 0;

  async exec(id: string, command: readonly string[], options: { readonly tty: boolean }, streams: ClientStreams): Promise<number> {
    this.execs.push({ id, command, tty: options.tty, streams: Object.keys(streams).sort() });
    const [name, ...args] = command;
    switch (name) {
      case "cat":
        await copy(streams.stdin, streams.stdout);
        return 0;
      case "echo":
        await write(streams.stdout, args.join(" ") + "\n");
        await write(streams.stderr, "to stderr\n");
        return 0;
      case "exit":
        await write(streams.stderr, "exiting\n");
        return Number(args[0]);
      case "fail":
        throw new VmpodError("NotFound", `container ${id} not found`);
      case "resize": {
        // Reports every resize until stdin ends.
        const reporting = (async () => {
          for await (const size of streams.resize ?? []) {
            this.resizes.push(size);
            await write(streams.stdout, `${size.width}x${size.height}\n`);
          }
        })();
        await copy(streams.stdin, undefined);
        await Promise.race([reporting, new Promise((r) => setTimeout(r, 50))]);
        return 0;
      }
      case "bulk": {
        const total = Number(args[0]);
        const chunk = Buffer.alloc(16 * 1024, "x");
        this.bulkWritten = 0;
        while (this.bulkWritten < total) {
          const piece = chunk.subarray(0, Math.min(chunk.length, total - this.bulkWritten));
          await write(streams.stdout, piece);
          this.bulkWritten += piece.length;
        }
        return 0;
      }
      default:
        await write(streams.stderr, `${name}: not found\n`);
        return 127;
    }
  }

  async attach(id: string, options: { readonly tty: boolean }, streams: ClientStreams): Promise<void> {
    this.attaches.push({ id, command: [], tty: options.tty, streams: Object.keys(streams).sort() });
    await write(streams.stdout, "attached\n");
    await copy(streams.stdin, streams.stdout);
  }

  async portForward(podId: string, port: number): Promise<Duplex> {
    this.forwards.push({ podId, port });
    const real = this.portMap.get(port);
    if (real === undefined) throw new VmpodError("Unavailable", `nothing listens on port ${port} in pod ${podId}`);
    const socket = net.connect(real, "127.0.0.1");
    await once(socket, "connect");
    this.connections.add(socket);
    socket.once("close", () => this.connections.delete(socket));
    return socket;
  }

  runPod = unimplemented;
  stopPod = unimplemented;
  removePod = unimplemented;
  podStatus = unimplemented;
  listPods = unimplemented;
  createContainer = unimplemented;
  startContainer = unimplemented;
  stopContainer = unimplemented;
  removeContainer = unimplemented;
  containerStatus = unimplemented;
  listContainers = unimplemented;
  updateContainer = unimplemented;
  reopenContainerLog = unimplemented;
  execSync = unimplemented;
  containerStats = unimplemented;
  listContainerStats = unimplemented;
  podStats = unimplemented;
  listPodStats = unimplemented;
  events = unimplemented;
  conditions = unimplemented;
  updateRuntimeConfig = unimplemented;
}

/** A TCP server on loopback that echoes everything, uppercased so a test sees it went through. */
export async function startEchoServer(): Promise<{ port: number; close(): Promise<void>; connections(): number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => undefined);
    socket.on("data", (chunk: Buffer) => socket.write(chunk.toString("latin1").toUpperCase(), "latin1"));
    socket.on("end", () => socket.end());
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return {
    port: (server.address() as net.AddressInfo).port,
    connections: () => sockets.size,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
