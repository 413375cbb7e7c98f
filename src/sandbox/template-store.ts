/**
 * The VM templates on disk, one directory per template key under the
 * configured template path:
 *
 *     <template_path>/<key>/state           the saved VM's devices
 *     <template_path>/<key>/memory          its RAM, zero pages left as holes
 *     <template_path>/<key>/manifest.json   key, inputs, both files' sizes and sha256
 *
 * A pod asking for a template that is not there gets none at once (it boots
 * cold) and the template is built in the background; pods asking while a
 * build runs wait for it, and `ensure` (the daemon's warm-up) waits for the
 * build it starts. A template is built once even when many ask, in a
 * directory of its own renamed into place when complete; templates built
 * from other files (an older guest image or QEMU) are removed then. Its
 * files are checked against the manifest's sha256 the first time this
 * process uses it, and against the files' identity (size, time, inode)
 * afterwards. Whatever goes wrong (a build that fails, a template that is
 * corrupt) yields no template and one log line: the caller boots the VM
 * cold. `close` stops the builds in flight (their VMs and work directories
 * go); `cleanupLeftovers` removes those of a daemon that died.
 */
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { VmpodError, messageOf } from "../common/errors.js";
import { run } from "../common/exec.js";
import { sha256File, writeFileAtomic } from "../common/fs.js";
import type { Logger } from "../common/log.js";
import { killProcessesMentioning, processAlive } from "../common/processes.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { VmSpec } from "../hypervisor/spec.js";
import { buildTemplate } from "./template-build.js";
import { TEMPLATE_FORMAT, templateKey } from "./template-key.js";

/** A template ready to restore from. */
export interface Template {
  readonly key: string;
  /** The devices' state, for `restoreState`. */
  readonly stateFile: string;
  /** The guest's RAM: each restored VM maps a copy of it (`MemoryFileSpec.copyOf`). */
  readonly memoryFile: string;
}

interface FileSum {
  readonly size: number;
  readonly sha256: string;
}

interface Manifest {
  readonly format: number;
  readonly key: string;
  readonly state: FileSum;
  readonly memory: FileSum;
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

/** A build in flight. */
interface Build {
  readonly done: Promise<boolean>;
  readonly abort: AbortController;
  /** Started by `ensure`: stopped when every one waiting for it gives up. */
  readonly onDemand: boolean;
  waiters: number;
}

const STATE_FILE = "state";
const MEMORY_FILE = "memory";
export const MANIFEST_FILE = "manifest.json";
const SAVE_TIMEOUT_MS = 120_000;
/** A build's work directory: `<key>.tmp-<pid of the daemon>-<random>`. */
const WORK_DIR = /^([0-9a-f]+)\.tmp-(\d+)-[0-9a-f]+$/;

/** The template key and building process of a build's work directory, by its name; undefined for any other name. */
export function buildWorkDir(name: string): { key: string; pid: number } | undefined {
  const match = WORK_DIR.exec(name);
  return match ? { key: match[1] as string, pid: Number(match[2]) } : undefined;
}

export class TemplateStore {
  /** Builds in flight, by key. */
  private readonly building = new Map<string, Build>();
  /** The templates checked against their manifest in this process: key → files' identity then. */
  private readonly verified = new Map<string, string>();
  private closed = false;
  /** How many templates this store built (tests and metrics). */
  builds = 0;

  constructor(private readonly options: TemplateStoreOptions) {}

  /**
   * The template for VMs launched like `spec` (the template's own shape:
   * booting, no share, no network card). When there is none, undefined at
   * once and the template built in the background, unless a build of it is
   * already running: then its end is waited for. Undefined when there is
   * none to use; the reason is logged.
   */
  get(spec: VmSpec, signal?: AbortSignal): Promise<Template | undefined> {
    return this.lookup(spec, false, signal);
  }

  /**
   * The template for VMs launched like `spec`, built and waited for when
   * there is none (the daemon's warm-up). Its build stops when `signal`
   * aborts and no one else waits for it.
   */
  ensure(spec: VmSpec, signal?: AbortSignal): Promise<Template | undefined> {
    return this.lookup(spec, true, signal);
  }

  private async lookup(spec: VmSpec, wait: boolean, signal: AbortSignal | undefined): Promise<Template | undefined> {
    const { logger } = this.options;
    if (this.closed) return undefined;
    let key: string;
    let inputs: unknown;
    try {
      ({ key, inputs } = await templateKey(spec));
    } catch (err) {
      logger.warn("no vm template, booting cold", { err: messageOf(err) });
      return undefined;
    }
    const dir = join(this.options.dir, key);
    try {
      if (!(await this.present(dir))) {
        let build = this.building.get(key);
        if (!build) {
          // Checked again here, with no wait before the build is registered: close() may have come meanwhile.
          if (this.closed) return undefined;
          build = this.startBuild(key, inputs, spec, wait);
          if (!wait) {
            logger.info("vm template not built yet: building it in the background, booting cold", { template: key });
            return undefined;
          }
        }
        if (!(await this.waitFor(build, signal))) return undefined;
      }
      const problem = await this.verify(key, dir);
      if (problem === undefined) return { key, stateFile: join(dir, STATE_FILE), memoryFile: join(dir, MEMORY_FILE) };
      logger.warn("vm template corrupt, removed; booting cold", { template: key, problem });
      await rm(dir, { recursive: true, force: true });
      return undefined;
    } catch (err) {
      if (signal?.aborted) throw err;
      logger.warn("vm template unusable, booting cold", { template: key, err: messageOf(err) });
      return undefined;
    }
  }

  private startBuild(key: string, inputs: unknown, spec: VmSpec, onDemand: boolean): Build {
    const abort = new AbortController();
    const build: Build = {
      done: this.build(key, inputs, spec, abort.signal).finally(() => this.building.delete(key)),
      abort,
      onDemand,
      waiters: 0,
    };
    this.building.set(key, build);
    return build;
  }

  /**
   * `build`'s result, or the signal's reason once it aborts. A build
   * started on demand is stopped when its last waiter gives up, and that
   * waiter returns once the build's VM and files are gone.
   */
  private async waitFor(build: Build, signal: AbortSignal | undefined): Promise<boolean> {
    signal?.throwIfAborted();
    build.waiters++;
    let onAbort: (() => void) | undefined;
    try {
      if (!signal) return await build.done;
      return await Promise.race([
        build.done,
        new Promise<never>((_, reject) => {
          onAbort = () => reject(signal.reason as Error);
          signal.addEventListener("abort", onAbort, { once: true });
        }),
      ]);
    } catch (err) {
      if (signal?.aborted && build.onDemand && build.waiters === 1) {
        build.abort.abort(new VmpodError("Canceled", "no one waits for the vm template any more"));
        await build.done;
      }
      throw err;
    } finally {
      if (onAbort) signal?.removeEventListener("abort", onAbort);
      build.waiters--;
    }
  }

  /**
   * Stops the builds in flight (their VMs stopped, their work directories
   * removed) and waits for them; the store gives no template afterwards.
   * Idempotent. The daemon calls it at shutdown.
   */
  async close(): Promise<void> {
    this.closed = true;
    const builds = [...this.building.values()];
    for (const build of builds) build.abort.abort(new VmpodError("Canceled", "the template store is closing"));
    await Promise.allSettled(builds.map((b) => b.done));
  }

  /**
   * Removes the unfinished builds of daemons that are gone: kills their
   * processes (a template VM, found by its work directory on its command
   * line) and removes their directories. The daemon calls it at start.
   */
  async cleanupLeftovers(): Promise<void> {
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    for (const name of names) {
      const owner = buildWorkDir(name)?.pid;
      if (owner === undefined || processAlive(owner)) continue;
      const path = join(this.options.dir, name);
      const killed = await killProcessesMentioning(path);
      if (killed.length > 0) this.options.logger.warn("killed processes of an unfinished vm template build", { dir: path, pids: killed });
      await rm(path, { recursive: true, force: true });
    }
  }

  /** Removes every template (they are rebuilt when next needed). */
  async clear(): Promise<void> {
    this.verified.clear();
    await rm(this.options.dir, { recursive: true, force: true });
  }

  /**
   * Forgets that a template was checked (its next use checks its files
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

  /**
   * Checks the files against the manifest: by sha256 the first time, by
   * identity afterwards. What is wrong, or undefined. The memory is hashed
   * as the state is: a restored guest runs on it, and reading it once per
   * process costs about as much as one restore's copy of it.
   */
  private async verify(key: string, dir: string): Promise<string | undefined> {
    let manifest: Manifest;
    try {
      manifest = JSON.parse(await readFile(join(dir, MANIFEST_FILE), "utf8")) as Manifest;
    } catch (err) {
      return `manifest unreadable: ${messageOf(err)}`;
    }
    if (manifest.format !== TEMPLATE_FORMAT || manifest.key !== key) return "the manifest is another template's";
    const files: [string, FileSum][] = [
      [join(dir, STATE_FILE), manifest.state],
      [join(dir, MEMORY_FILE), manifest.memory],
    ];
    const identities: string[] = [];
    for (const [file, sum] of files) {
      try {
        const st = await stat(file);
        if (st.size !== sum.size) return `${file} is ${st.size} bytes, the manifest says ${sum.size}`;
        identities.push(`${st.size}:${st.mtimeMs}:${st.ino}`);
      } catch (err) {
        return `${file} unreadable: ${messageOf(err)}`;
      }
    }
    const identity = identities.join(" ");
    if (this.verified.get(key) === identity) return undefined;
    for (const [file, sum] of files) {
      if ((await sha256File(file)) !== sum.sha256) return `${file} does not match its manifest's sha256`;
    }
    this.verified.set(key, identity);
    return undefined;
  }

  /** Builds the template of `key`; false (logged) when the build fails or is stopped. */
  private async build(key: string, inputs: unknown, spec: VmSpec, signal: AbortSignal): Promise<boolean> {
    const { logger } = this.options;
    const started = performance.now();
    const dir = join(this.options.dir, key);
    const work = join(this.options.dir, `${key}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`);
    try {
      await mkdir(work, { recursive: true, mode: 0o700 });
      const stateFile = join(work, STATE_FILE);
      const memoryFile = join(work, MEMORY_FILE);
      await buildTemplate({
        spec: rebase(spec, join(work, "vm"), memoryFile),
        hypervisor: this.options.newHypervisor(),
        stateFile,
        agentDialTimeoutMs: this.options.agentDialTimeoutMs,
        agentCallTimeoutMs: this.options.agentCallTimeoutMs,
        saveTimeoutMs: SAVE_TIMEOUT_MS,
        signal,
      });
      // The guest's zero pages become holes: no copy of the memory holds them.
      await run("cp", ["--sparse=always", "--", memoryFile, `${memoryFile}.sparse`], { signal });
      await rename(`${memoryFile}.sparse`, memoryFile);
      const sum = async (file: string): Promise<FileSum> => ({ size: (await stat(file)).size, sha256: await sha256File(file) });
      const state = await sum(stateFile);
      const memory = await sum(memoryFile);
      signal.throwIfAborted();
      const buildMs = Math.round(performance.now() - started);
      const manifest: Manifest = { format: TEMPLATE_FORMAT, key, state, memory, builtAt: new Date().toISOString(), buildMs, inputs };
      await writeFileAtomic(join(work, MANIFEST_FILE), `${JSON.stringify(manifest, null, 2)}\n`);
      await rm(dir, { recursive: true, force: true });
      await rename(work, dir);
      this.builds++;
      logger.info("vm template built", { template: key, stateBytes: state.size, ms: buildMs });
      await this.removeStale(key, inputs);
      return true;
    } catch (err) {
      if (signal.aborted) logger.info("vm template build stopped", { template: key, reason: messageOf(signal.reason) });
      else logger.warn("vm template build failed, booting cold", { template: key, err: messageOf(err) });
      return false;
    } finally {
      await rm(work, { recursive: true, force: true }).catch(() => {});
    }
  }

  /**
   * Removes the templates built from other files (another guest image or
   * QEMU: they can never be used again) and the unfinished builds of
   * daemons that are gone; templates of other VM shapes stay.
   */
  private async removeStale(keep: string, inputs: unknown): Promise<void> {
    const files = JSON.stringify((inputs as { files?: unknown }).files);
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    for (const name of names) {
      const path = join(this.options.dir, name);
      const owner = buildWorkDir(name)?.pid;
      if (owner !== undefined) {
        if (!processAlive(owner)) await rm(path, { recursive: true, force: true }).catch(() => {});
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

/** `spec` with its id and files moved into `runDir` (the template VM's), its memory in `memoryFile`. */
function rebase(spec: VmSpec, runDir: string, memoryFile: string): VmSpec {
  const moved = (path: string) => join(runDir, path.slice(spec.runDir.length));
  return {
    ...spec,
    id: "vmpod-template",
    runDir,
    qmpSocket: moved(spec.qmpSocket),
    consoleLog: moved(spec.consoleLog),
    ...(spec.agent ? { agent: { ...spec.agent, socketPath: moved(spec.agent.socketPath) } } : {}),
    memoryFile: { path: memoryFile },
  };
}
