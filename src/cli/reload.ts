/**
 * The daemon's configuration reload (SIGHUP): the file in force is read
 * again; what can change live is applied through the daemon's Reloadable
 * hook; every other changed key is named in one warning, and takes effect
 * at the next start. A file that no longer reads leaves the configuration
 * in force as it was.
 */
import { messageOf } from "../common/errors.js";
import type { Level, Logger } from "../common/log.js";
import { diffConfig, withLiveKeys, type ConfigDiff } from "../config/diff.js";
import { loadConfigFile, type Loaded } from "../config/load.js";
import type { Config } from "../config/types.js";

/** What a running daemon lets a reload change. */
export interface Reloadable {
  /** The level of the daemon's logs ("debug" whenever enable_debug is on). */
  setLogLevel(level: Level): void;
  /** Per-layer tracing (runtime.enable_debug) on or off. */
  setDebug?(on: boolean): void;
}

/** The log level a configuration asks for; `forceDebug` is the command line's --debug. */
export function logLevelOf(config: Config, forceDebug = false): Level {
  return forceDebug || config.runtime.enableDebug ? "debug" : config.runtime.logLevel;
}

export interface ReloaderOptions {
  /** The configuration file in force; undefined: the built-in defaults, nothing to read again. */
  readonly path: string | undefined;
  readonly assetDir: string;
  /** The configuration the daemon started with. */
  readonly config: Config;
  readonly target: Reloadable;
  readonly logger: Logger;
  /** --debug on the command line: debug logs whatever the file says. */
  readonly forceDebug?: boolean;
  /** Reads a file (a parameter for tests). */
  readonly load?: (path: string, assetDir: string) => Promise<Loaded>;
}

export class ConfigReloader {
  private inForce: Config;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly options: ReloaderOptions) {
    this.inForce = options.config;
  }

  /** The configuration in force: the start-up one with the live keys reloaded since. */
  get config(): Config {
    return this.inForce;
  }

  /** Reads the file again and applies it; one reload at a time. Undefined when nothing was read. */
  reload(): Promise<ConfigDiff | undefined> {
    const next = this.queue.then(() => this.reloadOnce());
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async reloadOnce(): Promise<ConfigDiff | undefined> {
    const { path, logger } = this.options;
    if (path === undefined) {
      logger.warn("reload: no configuration file is in force (built-in defaults); nothing to read again");
      return undefined;
    }
    let loaded: Loaded;
    try {
      loaded = await (this.options.load ?? loadConfigFile)(path, this.options.assetDir);
    } catch (err) {
      logger.error("reload: the configuration was not reloaded; the one in force stays", { source: path, err: messageOf(err) });
      return undefined;
    }
    for (const w of loaded.warnings) logger.warn(w);
    const diff = diffConfig(this.inForce, loaded.config);
    this.options.target.setLogLevel(logLevelOf(loaded.config, this.options.forceDebug));
    this.options.target.setDebug?.(loaded.config.runtime.enableDebug);
    this.inForce = withLiveKeys(this.inForce, loaded.config);
    if (diff.restart.length > 0) {
      logger.warn(`reload: changed keys that take effect only after a restart: ${diff.restart.join(", ")}`, { source: path });
    }
    logger.info("configuration reloaded", { source: path, applied: diff.live });
    return diff;
  }
}
