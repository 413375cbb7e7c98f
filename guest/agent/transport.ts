/**
 * The channel to the host, behind one interface: virtio-serial in the VM,
 * a unix socket for tests and debugging. vsock comes when it can be tested.
 * A transport hands every connection (or, on a serial port, every session
 * between two disconnections of the host) to `onStream` as a Duplex.
 */
import type { Duplex } from "node:stream";

export interface Transport {
  /** Where the agent listens, for the log. */
  readonly description: string;
  /** Starts accepting; resolves once the agent can be reached. */
  start(onStream: (stream: Duplex) => void): Promise<void>;
  /** Stops accepting and ends every open stream. Idempotent. */
  close(): Promise<void>;
}
