/**
 * The VM templates on disk, one directory per template key under the
 * configured template path:
 *
 *     <template_path>/<key>/state           the saved VM
 *     <template_path>/<key>/manifest.json   key, inputs, the state's size and sha256
 *
 * A template is built the first time a VM of its shape is asked for, once
 * even when many pods ask at the same time (they wait for the same build),
 * in a directory of its own renamed into place when complete; templates
 * built from other files (an older guest image or QEMU) are removed then. Its state is checked against the manifest's
 * sha256 the first time this process uses it, and against the file's
 * identity (size, time, inode) afterwards. Whatever goes wrong (a build
 * that fails, a template that is corrupt) yields no template and one log
 * line: the caller boots the VM cold.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { messageOf } from "../common/errors.js";
import { sha256File, writeFileAtomic } from "../common/fs.js";
import type { Logger } from "../common/log.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { buildTemplate } from "./template-build.js";
import { TEMPLATE_FORMAT, templateKey } from "./template-key.js";

/** A template ready to restore from. */
export interface Template {
  readonly key: string;
  readonly stateFile: string;
}

interface Manifest {
  readonly format: number;
  readonly key: string;
  readonly size: number;
  readonly sha256: string;
  readonly builtAt: string;
  readonly buildMs: number;
  readonly inputs: unknown;
}

export interface TemplateStoreOptions {
  /** The configured template path. */
  readonly dir: string;
  readonly newHypervisor: () => Hypervisor;
  readonly agentDialTimeoutMs: number;
  readonly agentCallTimeoutMs: number;
  readonly logger: Logger;
}

const STATE_FILE = "state";
const MANIFEST_FILE = "manifest.json";
const SAVE_TIMEOUT_MS = 120_000;

export class TemplateStore {
  /** Builds in flight, by key. */
  private readonly building = new Map<string, Promise<boolean>>();
  /** The state files checked against their manifest in this process: key → file identity then. */
  private readonly verified = new Map<string, string>();
  /** How many templates this store built (tests and metrics). */
  builds = 0;

  constructor(private readonly options: TemplateStoreOptions) {}

  /**
   * The template for VMs launched like `spec` (the template's own shape:
   * booting, no share, no network card), built when there is none.
   * Undefined when there is none to use; the reason is logged.
   */
  async get(spec: VmSpec, signal?: AbortSignal): Promise<Template | undefined> {
    const { logger } = this.options;
    let key: string;
    let inputs: unknown;
    try {
      ({ key, inputs } = await templateKey(spec));
    } catch (err) {
      logger.warn("no vm template, booting cold", { err: messageOf(err) });
      return undefined;
    }
    const dir = join(this.options.dir, key);
    const stateFile = join(dir, STATE_FILE);
    try {
      if (!(await this.present(dir))) {
        let build = this.building.get(key);
        if (!build) {
          // The build serves every pod waiting for it: no one request's signal stops it.
          build = this.build(key, inputs, spec).finally(() => this.building.delete(key));
          this.building.set(key, build);
        }
        if (!(await abortable(build, signal))) return undefined;
      }
      const problem = await this.verify(key, dir);
      if (problem === undefined) return { key, stateFile };
      logger.warn("vm template corrupt, removed; booting cold", { template: key, problem });
      await rm(dir, { recursive: true, force: true });
      return undefined;
    } catch (err) {
      if (signal?.aborted) throw err;
      logger.warn("vm template unusable, booting cold", { template: key, err: messageOf(err) });
      return undefined;
    }
  }

  /** Removes every template (they are rebuilt when next needed). */
  async clear(): Promise<void> {
    this.verified.clear();
    await rm(this.options.dir, { recursive: true, force: true });
  }

  /**
   * Forgets that a template was checked (its next use checks its state
   * again), and drops it when it failed to restore: `broken`.
   */
  async discard(template: Template, broken: boolean): Promise<void> {
    this.verified.delete(template.key);
    if (broken) await rm(join(this.options.dir, template.key), { recursive: true, force: true });
  }

  private async present(dir: string): Promise<boolean> {
    try {
      await stat(join(dir, MANIFEST_FILE));
      return true;
    } catch {
      return false;
    }
  }

  /** Checks the state against the manifest: by sha256 the first time, by identity afterwards. What is wrong, or undefined. */
  private async verify(key: string, dir: string): Promise<string | undefined> {
    const stateFile = join(dir, STATE_FILE);
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), "utf8")) as Manifest;
    } catch (err) {
      return `manifest unreadable: ${messageOf(err)}`;
    }
    if (manifest.format !== TEMPLATE_FORMAT || manifest.key !== key) return "the manifest is another template's";
    let identity: string;
    try {
      const st = await stat(stateFile);
      if (st.size !== manifest.size) return `the state is ${st.size} bytes, the manifest says ${manifest.size}`;
      identity = `${st.size}:${st.mtimeMs}:${st.ino}`;
    } catch (err) {
      return `state unreadable: ${messageOf(err)}`;
    }
    if (this.verified.get(key) === identity) return undefined;
    if ((await sha256File(stateFile)) !== manifest.sha256) return "the state does not match its manifest's sha256";
    this.verified.set(key, identity);
    return undefined;
  }

  /** Builds the template of `key`; false (logged) when the build fails. */
  private async build(key: string, inputs: unknown, spec: VmSpec): Promise<boolean> {
    const { logger } = this.options;
    const started = performance.now();
    const dir = join(this.options.dir, key);
    const work = join(this.options.dir, `${key}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    const runDir = join(work, "vm");
    try {
      await mkdir(work, { recursive: true, mode: 0o700 });
      const templateSpec = rebase(spec, runDir);
      const stateFile = join(work, STATE_FILE);
      await buildTemplate({
        spec: templateSpec,
        hypervisor: this.options.newHypervisor(),
        stateFile,
        agentDialTimeoutMs: this.options.agentDialTimeoutMs,
        agentCallTimeoutMs: this.options.agentCallTimeoutMs,
        saveTimeoutMs: SAVE_TIMEOUT_MS,
      });
      const { size } = await stat(stateFile);
      const buildMs = Math.round(performance.now() - started);
      const manifest: Manifest = { format: TEMPLATE_FORMAT, key, size, sha256: await sha256File(stateFile), builtAt: new Date().toISOString(), buildMs, inputs };
      await writeFileAtomic(join(work, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await rm(dir, { recursive: true, force: true });
      await rename(work, dir);
      this.builds++;
      logger.info("vm template built", { template: key, bytes: size, ms: buildMs });
      await this.removeStale(key, inputs);
      return true;
    } catch (err) {
      logger.warn("vm template build failed, booting cold", { template: key, err: messageOf(err) });
      return false;
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * Removes the templates built from other files (another guest image or
   * QEMU: they can never be used again) and the unfinished builds of other
   * processes; templates of other VM shapes stay.
   */
  private async removeStale(keep: string, inputs: unknown): Promise<void> {
    const files = JSON.stringify((inputs as { files?: unknown }).files);
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(this.options.dir, name);
      const building = /^[0-9a-f]+\.tmp-(\d+)-/.exec(name);
      if (building) {
        if (building[1] !== String(process.pid)) await rm(path, { recursive: true, force: true }).catch(() => {});
        continue;
      }
      if (name === keep) continue;
      const other = await readFile(join(path, MANIFEST_FILE), "utf8")
        .then((text) => JSON.stringify((JSON.parse(text) as { inputs?: { files?: unknown } }).inputs?.files))
        .catch(() => undefined);
      if (other !== files && !this.building.has(name)) await rm(path, { recursive: true, force: true }).catch(() => {});
    }
  }
}

/** `spec` with its id and files moved into `runDir` (the template VM's). */
function rebase(spec: VmSpec, runDir: string): VmSpec {
  const moved = (path: string) => join(runDir, path.slice(spec.runDir.length));
  return {
    ...spec,
    id: "vmpod-template",
    runDir,
    qmpSocket: moved(spec.qmpSocket),
    consoleLog: moved(spec.consoleLog),
    ...(spec.agent ? { agent: { ...spec.agent, socketPath: moved(spec.agent.socketPath) } } : {}),
  };
}

/** `work`'s result, or the signal's reason once it aborts (the work goes on). */
function abortable<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(e as Error);
      },
    );
  });
}
