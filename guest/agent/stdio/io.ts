/** The standard streams of a container process, as the agent serves them to the host. */
import type { StreamBuffer } from "./stream-buffer.js";

export interface ProcessIo {
  readonly terminal: boolean;
  readonly stdout: StreamBuffer;
  /** Already at its end for a terminal, whose output all comes on stdout. */
  readonly stderr: StreamBuffer;
  /** Resolves with the number of bytes taken, once the process's input has taken them. */
  writeStdin(data: Uint8Array): Promise<number>;
  /** End of input: the pipe is closed; a terminal is sent its EOF character. */
  closeStdin(): Promise<void>;
  /** Terminals only. */
  resize(rows: number, columns: number): void;
  /** Closes every descriptor the agent holds; pending reads see end of stream. */
  close(): void;
}
