/**
 * Structured logging: one JSON object per line. Child loggers carry fields
 * (pod and container ids) onto every line they write.
 */
export type Level = "debug" | "info" | "warn" | "error";

const ORDER: Record<Level, number> = { debug: 10, info: 20, warn: 30, error: 40 };

export type Fields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
  child(fields: Fields): Logger;
}

export interface LogSink {
  write(line: string): void;
}

export function createLogger(options: { level?: Level; sink?: LogSink; fields?: Fields } = {}): Logger {
  const sink = options.sink ?? { write: (line: string) => process.stderr.write(line) };
  return new JsonLogger(ORDER[options.level ?? "info"], sink, options.fields ?? {});
}

/** A logger that drops everything (unit tests, library use). */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};

class JsonLogger implements Logger {
  constructor(
    private readonly min: number,
    private readonly sink: LogSink,
    private readonly fields: Fields,
  ) {}

  debug(msg: string, fields?: Fields): void {
    this.emit("debug", msg, fields);
  }
  info(msg: string, fields?: Fields): void {
    this.emit("info", msg, fields);
  }
  warn(msg: string, fields?: Fields): void {
    this.emit("warn", msg, fields);
  }
  error(msg: string, fields?: Fields): void {
    this.emit("error", msg, fields);
  }
  child(fields: Fields): Logger {
    return new JsonLogger(this.min, this.sink, { ...this.fields, ...fields });
  }

  private emit(level: Level, msg: string, fields?: Fields): void {
    if (ORDER[level] < this.min) return;
    const record = { time: new Date().toISOString(), level, msg, ...this.fields, ...fields };
    this.sink.write(JSON.stringify(record, replacer) + "\n");
  }
}

function replacer(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === "bigint") return value.toString();
  return value;
}
