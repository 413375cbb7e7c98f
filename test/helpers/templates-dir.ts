/**
 * One VM templates directory for every VM a test process starts (engines
 * and daemons alike), so a run builds each template once instead of once
 * per test. Removed when the process exits, with any template VM still
 * being built in it.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

let dir: string | undefined;

export function sharedTemplatesDir(): string {
  if (dir === undefined) {
    const made = mkdtempSync(join(tmpdir(), "vmpod-test-templates-"));
    dir = made;
    process.on("exit", () => {
      // A build cut short by the end of the run leaves its QEMU, found by its run directory.
      try {
        execFileSync("pkill", ["-KILL", "-f", made], { stdio: "ignore" });
      } catch {
        // none left
      }
      rmSync(made, { recursive: true, force: true });
    });
  }
  return dir;
}
