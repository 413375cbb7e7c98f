/**
 * How the host reaches a VM's agent. Today: a unix socket that QEMU bridges to
 * a virtio-serial port in the guest. vsock would be another implementation;
 * it is not written until it can be tested on a host with /dev/vhost-vsock.
 */
import net from "node:net";
import type { Duplex } from "node:stream";
import { VmpodError } from "../common/errors.js";
import { sleep } from "../common/time.js";

export interface AgentTransport {
  /** For error messages: "virtio-serial via /run/vmpod/.../agent.sock". */
  readonly description: string;
  /** Opens the byte stream to the agent; retries until `deadline` (ms since epoch) while the endpoint is not there yet. */
  connect(deadline: number, signal?: AbortSignal): Promise<Duplex>;
}

const RETRY_MS = 20;

export class UnixSocketTransport implements AgentTransport {
  readonly description: string;

  constructor(private readonly path: string, kind = "virtio-serial") {
    this.description = `${kind} via ${path}`;
  }

  async connect(deadline: number, signal?: AbortSignal): Promise<Duplex> {
    for (;;) {
      signal?.throwIfAborted();
      try {
        return await dial(this.path);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const retriable = code === "ENOENT" || code === "ECONNREFUSED";
        if (!retriable || Date.now() + RETRY_MS >= deadline) {
          throw new VmpodError(retriable ? "DeadlineExceeded" : "Unavailable", `connect to agent (${this.description})`, { cause: err });
        }
        await sleep(RETRY_MS, signal);
      }
    }
  }
}

function dial(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(path);
    const onError = (err: Error) => {
      socket.destroy();
      reject(err);
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      socket.off("error", onError);
      resolve(socket);
    });
  });
}
