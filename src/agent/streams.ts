/**
 * A process's standard streams as Node streams, pulled from and pushed to the
 * agent. Each read is one agent call that returns as soon as the guest has
 * bytes, so back-pressure is end to end: nothing is read from the guest until
 * the consumer asks for more.
 */
import { Duplex, Readable, Writable } from "node:stream";
import { VmpodError } from "../common/errors.js";
import type { AgentClient, StdStream } from "./client.js";

const CHUNK = 64 * 1024;

export function agentOutput(agent: AgentClient, which: StdStream, containerId: string, execId: string): Readable {
  const controller = new AbortController();
  return new Readable({
    highWaterMark: CHUNK,
    read() {
      agent.read(which, containerId, execId, CHUNK, { signal: controller.signal }).then(
        (data) => this.push(data.length === 0 ? null : Buffer.from(data)),
        (err: unknown) => this.destroy(err as Error),
      );
    },
    destroy(err, callback) {
      controller.abort();
      callback(err);
    },
  });
}

export function agentInput(agent: AgentClient, containerId: string, execId: string): Writable {
  return new Writable({
    highWaterMark: CHUNK,
    write(chunk: Buffer, _encoding, callback) {
      writeAll(agent, containerId, execId, chunk).then(() => callback(), callback);
    },
    final(callback) {
      agent.closeStdin(containerId, execId).then(() => callback(), callback);
    },
  });
}

async function writeAll(agent: AgentClient, containerId: string, execId: string, chunk: Buffer): Promise<void> {
  let offset = 0;
  while (offset < chunk.length) {
    const n = await agent.writeStdin(containerId, execId, chunk.subarray(offset, offset + CHUNK));
    if (n <= 0) throw new VmpodError("Unavailable", `stdin of ${containerId}/${execId || "init"} is closed`);
    offset += n;
  }
}

/**
 * A TCP connection the agent opened to a port in the guest, as a Duplex:
 * reads are agent calls that return when the guest has bytes (so
 * back-pressure holds), writes go through as they come, and ending either
 * side closes the connection in the guest.
 */
export function agentPortStream(agent: AgentClient, connectionId: string): Duplex {
  const controller = new AbortController();
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    controller.abort();
    agent.closePort(connectionId).catch(() => undefined);
  };
  return new Duplex({
    readableHighWaterMark: CHUNK,
    writableHighWaterMark: CHUNK,
    read() {
      agent.readPort(connectionId, CHUNK, { signal: controller.signal }).then(
        (data) => this.push(data.length === 0 ? null : Buffer.from(data)),
        (err: unknown) => (controller.signal.aborted ? this.push(null) : this.destroy(err as Error)),
      );
    },
    write(chunk: Buffer, _encoding, callback) {
      (async () => {
        for (let offset = 0; offset < chunk.length; ) {
          const n = await agent.writePort(connectionId, chunk.subarray(offset, offset + CHUNK), { signal: controller.signal });
          if (n <= 0) throw new VmpodError("Unavailable", `port connection ${connectionId} is closed`);
          offset += n;
        }
      })().then(() => callback(), callback);
    },
    final(callback) {
      callback();
    },
    destroy(err, callback) {
      close();
      callback(err);
    },
  });
}
