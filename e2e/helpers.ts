/** Small things the end-to-end tests share: commands, waiting, the host's pod namespaces. */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const exec = promisify(execFile);

/** A command's stdout; a failure (or a minute) rejects. */
export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  return (await exec(cmd, [...args], { timeout: 60_000, maxBuffer: 64 << 20 })).stdout;
}

/** Polls `probe` until it gives a value, for at most `timeoutMs`. */
export async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Pod network namespaces vmpod made (theirs start with "vmpod-"). */
export async function podNetnses(): Promise<string[]> {
  return (await sh("ip", ["netns", "list"]))
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => n.startsWith("vmpod-"));
}
