/** A unix socket listener: for tests on the host and for debugging. */
import { chmod, mkdir, rm } from "node:fs/promises";
import net from "node:net";
import { dirname } from "node:path";
import type { Duplex } from "node:stream";
import type { Logger } from "../../src/common/log.js";
import type { Transport } from "./transport.js";

export class UnixTransport implements Transport {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  constructor(
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  get description(): string {
    return `unix:${this.path}`;
  }

  async start(onStream: (stream: Duplex) => void): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true });
    await rm(this.path, { force: true });
    const server = net.createServer((socket) => {
      this.sockets.add(socket);
      socket.on("error", (err) => this.log.debug("host connection failed", { err }));
      socket.on("close", () => this.sockets.delete(socket));
      onStream(socket);
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.path, () => {
        server.off("error", reject);
        resolve();
      });
    });
    server.on("error", (err) => this.log.error("listener failed", { err }));
    await chmod(this.path, 0o600);
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    for (const socket of this.sockets) socket.destroy();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.path, { force: true });
  }
}
