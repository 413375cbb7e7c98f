/**
 * The standard streams of a process in a pod VM, as Node streams, plus its
 * exit status and terminal resizing.
 */
import type { Readable, Writable } from "node:stream";
import type { AgentClient } from "../agent/client.js";
import { agentInput, agentOutput } from "../agent/streams.js";

export interface ProcessIo {
  readonly stdout: Readable;
  /** Absent for a process with a terminal: its stderr is the terminal too. */
  readonly stderr?: Readable;
  readonly stdin?: Writable;
  /** The exit status: the code, or 128 + signal. */
  wait(options?: { signal?: AbortSignal }): Promise<number>;
  resize(rows: number, columns: number): Promise<void>;
}

export function openProcessIo(agent: AgentClient, containerId: string, execId: string, options: { stdin?: boolean; terminal?: boolean }): ProcessIo {
  return {
    stdout: agentOutput(agent, "stdout", containerId, execId),
    ...(options.terminal ? {} : { stderr: agentOutput(agent, "stderr", containerId, execId) }),
    ...(options.stdin ? { stdin: agentInput(agent, containerId, execId) } : {}),
    wait: (o) => agent.waitProcess(containerId, execId, o ?? {}),
    resize: (rows, columns) => agent.ttyWinResize(containerId, execId, rows, columns),
  };
}

/** Reads a stream to its end. */
export async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}
