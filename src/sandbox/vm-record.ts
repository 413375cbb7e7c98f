/**
 * What a restarted vmpod needs to take a pod's running VM over: the spec it
 * was launched from and its processes (pid and start time), written in the
 * pod's directory once the VM has started (`<pod dir>/vm.json`).
 */
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { writeFileAtomic } from "../common/fs.js";
import type { ProcessRef } from "../hypervisor/adopted-process.js";
import type { VmHandle } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import type { SandboxPaths } from "./layout.js";

const VERSION = 1;

export interface VmRecord {
  readonly spec: VmSpec;
  readonly handle: VmHandle;
  /** The key of the template the VM was restored from; none for a cold boot. */
  readonly template?: string;
}

function recordPath(paths: SandboxPaths): string {
  return join(paths.root, "vm.json");
}

export async function saveVmRecord(paths: SandboxPaths, record: VmRecord): Promise<void> {
  await writeFileAtomic(recordPath(paths), `${JSON.stringify({ version: VERSION, ...record })}\n`);
}

/**
 * The record of the pod's VM. NotFound when there is none (the VM never
 * started, or vmpod died before writing it); InvalidArgument when it is
 * not one this vmpod can read.
 */
export async function loadVmRecord(paths: SandboxPaths): Promise<VmRecord> {
  const path = recordPath(paths);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new VmpodError("NotFound", `no vm record at ${path}`);
    throw new VmpodError("Internal", `read ${path}`, { cause: err });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new VmpodError("InvalidArgument", `${path} is not JSON`, { cause: err });
  }
  const value = parsed as { version?: unknown; spec?: unknown; handle?: { qemu?: unknown; virtiofsd?: unknown }; template?: unknown };
  if (value.version !== VERSION) throw new VmpodError("InvalidArgument", `${path}: version ${String(value.version)}, this vmpod reads ${VERSION}`);
  if (typeof value.spec !== "object" || value.spec === null) throw new VmpodError("InvalidArgument", `${path}: no spec`);
  if (!isProcessRef(value.handle?.qemu) || (value.handle.virtiofsd !== undefined && !isProcessRef(value.handle.virtiofsd))) {
    throw new VmpodError("InvalidArgument", `${path}: no process handle`);
  }
  // The spec is validated again by the hypervisor when it adopts the VM.
  return { spec: value.spec as VmSpec, handle: value.handle as VmHandle, ...(typeof value.template === "string" ? { template: value.template } : {}) };
}

function isProcessRef(value: unknown): value is ProcessRef {
  const ref = value as Partial<ProcessRef> | undefined;
  return typeof ref === "object" && ref !== null && Number.isSafeInteger(ref.pid) && (ref.pid ?? 0) > 0 && typeof ref.startTime === "string";
}
