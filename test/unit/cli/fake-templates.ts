/** Template directories as the template store leaves them, for the tests of the operator's commands. */
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { TEMPLATE_FORMAT } from "../../../src/sandbox/template-key.js";

/**
 * `root/key/{state,memory}` (60 and 40 bytes) and their manifest, built from
 * QEMU and guest files `files`; `extra` overrides manifest fields.
 */
export async function fakeTemplate(root: string, key: string, files: unknown, extra: Record<string, unknown> = {}): Promise<void> {
  await mkdir(join(root, key), { recursive: true });
  await writeFile(join(root, key, "state"), "x".repeat(60));
  await writeFile(join(root, key, "memory"), "y".repeat(40));
  const sum = (size: number) => ({ size, sha256: "0".repeat(64) });
  const manifest = { format: TEMPLATE_FORMAT, key, state: sum(60), memory: sum(40), builtAt: "2026-11-23T15:00:00.000Z", buildMs: 41_234, inputs: { format: TEMPLATE_FORMAT, args: [], files }, ...extra };
  await writeFile(join(root, key, "manifest.json"), JSON.stringify(manifest));
}
