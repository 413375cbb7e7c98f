/**
 * Reads typed values out of a parsed configuration document, one key at a
 * time: each read checks the value's type and range and names the file, the
 * line and the key when it is wrong. The reader remembers the keys asked
 * for, so that what is left over is reported as unknown and the list of
 * every key vmpod reads comes from the reading itself.
 */
import { VmpodError } from "../common/errors.js";
import type { KeyLines } from "./locate.js";
import type { HandlerConfig, RegistryHostConfig } from "./types.js";

export type Table = Record<string, unknown>;

/** The keys of one `[registries."HOST"]` table. */
export const REGISTRY_KEYS = ["mirrors", "plain_http", "insecure_skip_verify", "ca_files"] as const;
/** The keys of one `[runtime.handlers.NAME]` table. */
export const HANDLER_KEYS = ["type", "runtime_path"] as const;

export class Reader {
  /** Every key looked up, tables included: what is not among them is unknown. */
  private readonly used = new Set<string>();
  /** The keys that hold values, in the order read; "*" stands for a host or handler name. */
  private readonly leaves: string[] = [];
  private readonly extraWarnings: string[] = [];

  constructor(
    private readonly source: string,
    private readonly doc: Table,
    private readonly lines: KeyLines,
  ) {}

  str(key: string, fallback: string): string {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || v === "") throw this.bad(key, "a non-empty string", v);
    return v;
  }

  int(key: string, fallback: number, min: number, max: number): number {
    const v = this.value(key);
    if (v === undefined) return fallback;
    const n = typeof v === "bigint" ? Number(v) : v;
    if (typeof n !== "number" || !Number.isInteger(n)) throw this.bad(key, "an integer", v);
    if (n < min || n > max) throw this.fail(key, `${key} = ${n} is out of range [${min}, ${max}]`);
    return n;
  }

  oneOf<T extends string>(key: string, allowed: readonly T[], fallback: T): T {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (typeof v !== "string" || !(allowed as readonly string[]).includes(v)) throw this.bad(key, `one of ${allowed.join(", ")}`, v);
    return v as T;
  }

  /** A string of space-separated words, or an array of strings. */
  words(key: string, fallback: readonly string[]): readonly string[] {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (typeof v === "string") return v.split(/\s+/).filter((w) => w !== "");
    if (Array.isArray(v) && v.every((w) => typeof w === "string")) return v as string[];
    throw this.bad(key, "a string or an array of strings", v);
  }

  /** A non-empty array of absolute paths. */
  paths(key: string, fallback: readonly string[]): readonly string[] {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (!Array.isArray(v) || v.length === 0 || !v.every((p) => typeof p === "string" && p.startsWith("/"))) throw this.bad(key, "a non-empty array of absolute paths", v);
    return v as string[];
  }

  bool(key: string, fallback: boolean): boolean {
    const v = this.value(key);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw this.bad(key, "true or false", v);
    return v;
  }

  /** "os/arch" or "os/arch/variant". */
  platform(key: string, fallback: string): string {
    const v = this.str(key, fallback);
    if (!/^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_]+)?$/.test(v)) throw this.bad(key, "os/architecture[/variant]", v);
    return v;
  }

  /** host:port (port 0: any free one). */
  address(key: string, fallback: string): string {
    const v = this.str(key, fallback);
    if (!/^[^:]+:\d+$/.test(v)) throw this.fail(key, `${key} must be host:port, not ${JSON.stringify(v)}`);
    return v;
  }

  /** `[registries."HOST"]` tables; host names hold dots, so they are read as tables, not dotted keys. */
  registries(key: string): Record<string, RegistryHostConfig> {
    for (const k of REGISTRY_KEYS) this.leaves.push(`${key}.*.${k}`);
    const section = this.get(key);
    if (section === undefined) return {};
    if (!isTable(section)) throw this.bad(key, "a table of registry hosts", section);
    const out: Record<string, RegistryHostConfig> = {};
    for (const [host, value] of Object.entries(section)) {
      const where = `${key}.${JSON.stringify(host)}`;
      if (!/^[A-Za-z0-9.-]+(:[0-9]+)?$/.test(host)) throw this.fail(where, `${where} is not a registry host[:port]`);
      if (!isTable(value)) throw this.bad(where, "a table", value);
      this.warnUnknown(where, value, REGISTRY_KEYS);
      const list = (k: string): string[] => {
        const v = value[k];
        if (v === undefined) return [];
        if (!Array.isArray(v) || !v.every((s) => typeof s === "string" && s !== "")) throw this.bad(`${where}.${k}`, "an array of strings", v);
        return v as string[];
      };
      const flag = (k: string): boolean | undefined => {
        const v = value[k];
        if (v === undefined) return undefined;
        if (typeof v !== "boolean") throw this.bad(`${where}.${k}`, "true or false", v);
        return v;
      };
      const mirrors = list("mirrors");
      for (const m of mirrors) {
        let url: URL;
        try {
          url = new URL(m);
        } catch {
          throw this.bad(`${where}.mirrors`, "URLs such as https://mirror.example:5000", m);
        }
        if (url.protocol !== "http:" && url.protocol !== "https:") throw this.bad(`${where}.mirrors`, "http:// or https:// URLs", m);
      }
      const plainHttp = flag("plain_http");
      out[host] = { mirrors, ...(plainHttp === undefined ? {} : { plainHttp }), insecureSkipVerify: flag("insecure_skip_verify") ?? false, caFiles: list("ca_files") };
    }
    return out;
  }

  /** `[runtime.handlers.NAME] type = "vm" | "oci", runtime_path = "..."`; replaces the defaults when given. */
  handlers(key: string, fallback: Readonly<Record<string, HandlerConfig>>): Record<string, HandlerConfig> {
    for (const k of HANDLER_KEYS) this.leaves.push(`${key}.*.${k}`);
    const section = this.get(key);
    if (section === undefined) return { ...fallback };
    if (!isTable(section)) throw this.bad(key, "a table of handlers", section);
    const out: Record<string, HandlerConfig> = {};
    for (const [name, value] of Object.entries(section)) {
      const where = `${key}.${name}`;
      if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(name)) throw this.fail(where, `${where}: a handler name is a DNS label, as RuntimeClass requires`);
      if (!isTable(value)) throw this.bad(where, "a table", value);
      this.warnUnknown(where, value, HANDLER_KEYS);
      if (value.type === "vm") out[name] = { type: "vm" };
      else if (value.type === "oci") {
        if (typeof value.runtime_path !== "string" || value.runtime_path === "") throw this.bad(`${where}.runtime_path`, "the path of an OCI runtime binary (runc, crun)", value.runtime_path);
        out[name] = { type: "oci", runtimePath: value.runtime_path };
      } else throw this.bad(`${where}.type`, `"vm" or "oci"`, value.type);
    }
    return out;
  }

  /** The keys read so far that hold values ("*" for each host or handler name). */
  keysRead(): readonly string[] {
    return [...this.leaves];
  }

  unknownKeys(): string[] {
    const warnings: string[] = [];
    const walk = (table: Table, prefix: string) => {
      for (const [k, v] of Object.entries(table)) {
        const key = prefix ? `${prefix}.${k}` : k;
        if (this.used.has(key)) continue;
        if (isTable(v)) walk(v, key);
        else warnings.push(`${this.where(key)}: unknown key ${key}`);
      }
    };
    walk(this.doc, "");
    return [...warnings, ...this.extraWarnings];
  }

  /** An InvalidArgument error about `key`, placed at its line. */
  fail(key: string, message: string): VmpodError {
    return new VmpodError("InvalidArgument", `${this.where(key)}: ${message}`);
  }

  /** "file:line", or the file alone when the key is not written in it. */
  where(key: string): string {
    const line = this.lines.lineOf(key);
    return line === undefined ? this.source : `${this.source}:${line}`;
  }

  private warnUnknown(where: string, table: Table, known: readonly string[]): void {
    for (const k of Object.keys(table)) if (!known.includes(k)) this.extraWarnings.push(`${this.where(`${where}.${k}`)}: unknown key ${where}.${k}`);
  }

  /** A key that holds a value. */
  private value(key: string): unknown {
    this.leaves.push(key);
    return this.get(key);
  }

  private get(key: string): unknown {
    this.used.add(key);
    let node: unknown = this.doc;
    for (const part of key.split(".")) {
      if (!isTable(node)) return undefined;
      node = node[part];
    }
    return node;
  }

  private bad(key: string, expected: string, got: unknown): VmpodError {
    return this.fail(key, `${key} must be ${expected}, not ${JSON.stringify(typeof got === "bigint" ? Number(got) : got)}`);
  }
}

function isTable(v: unknown): v is Table {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}
