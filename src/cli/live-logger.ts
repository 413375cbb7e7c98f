/**
 * The daemon's logger, whose level can change while it runs (SIGHUP with a
 * new runtime.log_level or enable_debug): every child made from it follows.
 */
import { createLogger, type Fields, type Level, type Logger, type LogSink } from "../common/log.js";

const RANK: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export interface LiveLogger {
  readonly logger: Logger;
  level(): Level;
  setLevel(level: Level): void;
}

export function createLiveLogger(options: { level: Level; sink?: LogSink }): LiveLogger {
  const state = { level: options.level };
  // Everything is formatted by one logger that passes all levels; the level is checked here.
  const all = createLogger({ level: "debug", ...(options.sink === undefined ? {} : { sink: options.sink }) });
  return {
    logger: new LevelGate(all, state),
    level: () => state.level,
    setLevel(level) {
      state.level = level;
    },
  };
}

class LevelGate implements Logger {
  constructor(
    private readonly inner: Logger,
    private readonly state: { level: Level },
  ) {}

  debug(msg: string, fields?: Fields): void {
    if (this.passes("debug")) this.inner.debug(msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    if (this.passes("info")) this.inner.info(msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    if (this.passes("warn")) this.inner.warn(msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    if (this.passes("error")) this.inner.error(msg, fields);
  }
  child(fields: Fields): Logger {
    return new LevelGate(this.inner.child(fields), this.state);
  }

  private passes(level: Level): boolean {
    return RANK[level] >= RANK[this.state.level];
  }
}
