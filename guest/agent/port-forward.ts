/**
 * TCP connections to ports on the guest's loopback (the pod's network
 * namespace), carried over the agent channel for CRI PortForward. Reads have
 * the semantics of ReadStdout: they return as soon as bytes arrive, empty
 * data is the end of the stream, and a connection whose reader lags is
 * paused (TCP back-pressure) rather than buffered without bound.
 */
import net from "node:net";
import { VmpodError } from "../../src/common/errors.js";
import type { Logger } from "../../src/common/log.js";
import { StreamBuffer } from "./stdio/stream-buffer.js";

const MAX_CONNECTIONS = 1024;

interface Connection {
  readonly socket: net.Socket;
  readonly output: StreamBuffer;
}

export class PortForwarder {
  private readonly connections = new Map<string, Connection>();
  private next = 1;

  constructor(
    private readonly log: Logger,
    private readonly host = "127.0.0.1",
  ) {}

  get size(): number {
    return this.connections.size;
  }

  async open(port: number, signal?: AbortSignal): Promise<string> {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new VmpodError("InvalidArgument", `bad port ${port}`);
    if (this.connections.size >= MAX_CONNECTIONS) throw new VmpodError("ResourceExhausted", `${MAX_CONNECTIONS} forwarded connections are open`);
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: this.host, port });
      const onAbort = () => {
        s.destroy();
        reject(new VmpodError("Canceled", `connect to port ${port} canceled`));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      s.once("connect", () => {
        signal?.removeEventListener("abort", onAbort);
        s.removeAllListeners("error");
        resolve(s);
      });
      s.once("error", (err: NodeJS.ErrnoException) => {
        signal?.removeEventListener("abort", onAbort);
        reject(new VmpodError("Unavailable", `connect to ${this.host}:${port}: ${err.code ?? err.message}`));
      });
    });
    socket.on("error", (err) => this.log.debug("forwarded connection failed", { port, err }));
    const id = `pf-${this.next++}`;
    this.connections.set(id, { socket, output: new StreamBuffer(socket) });
    this.log.debug("port connection opened", { port, connectionId: id });
    return id;
  }

  read(id: string, max: number, signal?: AbortSignal): Promise<Buffer> {
    return this.get(id).output.read(max, signal);
  }

  /** Resolves with the bytes written once the socket has taken them. */
  write(id: string, data: Uint8Array): Promise<number> {
    const { socket } = this.get(id);
    if (socket.destroyed || !socket.writable) return Promise.reject(new VmpodError("FailedPrecondition", `connection ${id} is closed for writing`));
    if (data.length === 0) return Promise.resolve(0);
    return new Promise((resolve, reject) => {
      socket.write(data, (err) => {
        if (err) reject(new VmpodError("Unavailable", `write to connection ${id}`, { cause: err }));
        else resolve(data.length);
      });
    });
  }

  close(id: string): void {
    const c = this.get(id);
    this.connections.delete(id);
    c.output.close();
    c.socket.destroy();
  }

  closeAll(): void {
    for (const id of [...this.connections.keys()]) this.close(id);
  }

  private get(id: string): Connection {
    const c = this.connections.get(id);
    if (!c) throw new VmpodError("NotFound", `no forwarded connection ${JSON.stringify(id)}`);
    return c;
  }
}
