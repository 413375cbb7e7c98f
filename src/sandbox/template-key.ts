/**
 * The key of a VM template: a hash of everything that shapes the saved VM,
 * so that a template is used only by VMs launched exactly as it was. It
 * covers the QEMU command line the builder makes from the template's spec
 * (machine, memory and its backend, vCPUs, acceleration, kernel parameters,
 * hot-plug ports, the builder's own choices), with the paths of the VM's own
 * files (its memory file too) replaced by fixed ones, and the identity of the files it reads (QEMU, kernel,
 * initramfs, root image): path, size, modification time and inode, so that
 * a rebuilt or touched guest image makes a new key without hashing the
 * images at every pod start.
 */
import { createHash } from "node:crypto";
import { stat } from "node:fs/promises";
import { VmpodError } from "../common/errors.js";
import { buildQemuArgs } from "../hypervisor/qemu-args.js";
import { vmPaths, type VmSpec } from "../hypervisor/spec.js";

/** Bumped when what a template holds or how it is restored changes. */
export const TEMPLATE_FORMAT = 2;

/** The run directory the key is computed with, standing for any VM's. */
const CANONICAL_RUN_DIR = "/vmpod-template";

/** A spec with its id and own files replaced by the fixed ones the key uses. */
export function canonicalSpec(spec: VmSpec): VmSpec {
  const paths = vmPaths(CANONICAL_RUN_DIR);
  return {
    ...spec,
    id: "template",
    runDir: CANONICAL_RUN_DIR,
    qmpSocket: paths.qmpSocket,
    consoleLog: paths.consoleLog,
    ...(spec.agent ? { agent: { ...spec.agent, socketPath: paths.agentSocket } } : {}),
    ...(spec.memoryFile ? { memoryFile: { path: `${CANONICAL_RUN_DIR}/memory` } } : {}),
  };
}

export interface TemplateKey {
  /** 16 hex digits. */
  readonly key: string;
  /** What was hashed, kept in the template's manifest to say why a key changed. */
  readonly inputs: Readonly<Record<string, unknown>>;
}

/** The key of the template saved from a VM launched from `spec` (not paused, not incoming). */
export async function templateKey(spec: VmSpec): Promise<TemplateKey> {
  const canonical = canonicalSpec({ ...spec, paused: false, incoming: false });
  const files: Record<string, string> = {};
  const named = [spec.qemuPath, spec.boot?.kernel, spec.boot?.initrd, spec.rootImage].filter((p): p is string => p !== undefined);
  for (const path of named) files[path] = await fileIdentity(path);
  const inputs = { format: TEMPLATE_FORMAT, args: buildQemuArgs(canonical), files };
  const key = createHash("sha256").update(JSON.stringify(inputs)).digest("hex").slice(0, 16);
  return { key, inputs };
}

async function fileIdentity(path: string): Promise<string> {
  try {
    const st = await stat(path);
    return `${st.size}:${st.mtimeMs}:${st.dev}:${st.ino}`;
  } catch (err) {
    throw new VmpodError("NotFound", `template input ${path} cannot be read`, { cause: err });
  }
}
