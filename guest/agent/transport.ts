/**
 * The channel to the host, behind one interface: virtio-serial in the VM,
 * a unix socket for tests and debugging. vsock comes when it can be tested.
 * A transport hands every connection (or, on a serial port, every session
 * between two disconnections of the host) to `onStream` as a Duplex.
 */
import type { Duplex } from "node:stream";
import type { Logger } from "../../src/common/log.js";
import type { AgentOptions } from "./options.js";

export interface Transport {
  /** Where the agent listens, for the log. */
  readonly description: string;
  /** Starts accepting; resolves once the agent can be reached. */
  start(onStream: (stream: Duplex) => void): Promise<void>;
  /** Stops accepting and ends every open stream. Idempotent. */
  close(): Promise<void>;
}

export async function openTransport(options: AgentOptions, log: Logger): Promise<Transport> {
  const listen = options.listen;
  if (listen.kind === "unix") {
    const { UnixTransport } = await import("./transport-unix.js");
    return new UnixTransport(listen.path, log);
  }
  const { openSerialTransport } = await import("./transport-serial.js");
  return openSerialTransport({ name: listen.name, portsDir: options.virtioPortsDir, devDir: options.devDir }, log);
}
