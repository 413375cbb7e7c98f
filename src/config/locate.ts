/**
 * Where a key is written in a configuration file: the line of its
 * `key = value`, or of the `[table]` that holds it, so that an error about a
 * value can point at the line to fix. TOML's parser gives positions for
 * syntax errors only; this reads the text again, a line at a time, for
 * tables and keys (values that span lines are stepped over).
 */

export interface KeyLines {
  /**
   * The 1-based line where `key` ("hypervisor.qemu.path",
   * `registries."docker.io".mirrors`) is set; for a key not written itself,
   * the line of the nearest table or key holding it; undefined when none is.
   */
  lineOf(key: string): number | undefined;
  /** The line where `key` itself is written (as a key or a table), or undefined. */
  writtenAt(key: string): number | undefined;
}

/** For configuration that comes from no file. */
export const NO_LINES: KeyLines = { lineOf: () => undefined, writtenAt: () => undefined };

/** The lines of the keys and tables written in `text`. */
export function keyLines(text: string): KeyLines {
  const lines = new Map<string, number>();
  const note = (path: readonly string[], line: number) => {
    for (let i = 1; i <= path.length; i++) {
      const id = JSON.stringify(path.slice(0, i));
      if (!lines.has(id)) lines.set(id, line);
    }
  };
  let table: string[] = [];
  let inMultiline: '"""' | "'''" | undefined;
  let depth = 0;
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1;
    if (inMultiline !== undefined) {
      if (raw.includes(inMultiline)) inMultiline = undefined;
      return;
    }
    if (depth > 0) {
      depth = Math.max(0, depth + bracketBalance(raw));
      return;
    }
    const header = /^\s*\[\[?(.*?)\]\]?\s*(#.*)?$/.exec(raw);
    if (header) {
      const path = splitKey(header[1] ?? "");
      if (path !== undefined) {
        table = path;
        note(table, line);
      }
      return;
    }
    const assignment = /^\s*([^=#]+?)\s*=(.*)$/.exec(raw);
    if (!assignment) return;
    const path = splitKey(assignment[1] ?? "");
    if (path === undefined) return;
    note([...table, ...path], line);
    const value = assignment[2] ?? "";
    for (const quote of ['"""', "'''"] as const) {
      if (value.split(quote).length === 2) inMultiline = quote;
    }
    if (inMultiline === undefined) depth = Math.max(0, bracketBalance(value));
  });
  const pathOf = (key: string) => splitKey(key) ?? key.split(".");
  return {
    lineOf(key) {
      const path = pathOf(key);
      for (let i = path.length; i > 0; i--) {
        const found = lines.get(JSON.stringify(path.slice(0, i)));
        if (found !== undefined) return found;
      }
      return undefined;
    },
    writtenAt: (key) => lines.get(JSON.stringify(pathOf(key))),
  };
}

/**
 * A dotted TOML key split into its parts: bare (`a-b_c`), "basic" or
 * 'literal' strings. Undefined when `key` is not a key.
 */
export function splitKey(key: string): string[] | undefined {
  const parts: string[] = [];
  let rest = key.trim();
  for (;;) {
    let part: string;
    const bare = /^[A-Za-z0-9_-]+/.exec(rest);
    const basic = /^"((?:[^"\\]|\\.)*)"/.exec(rest);
    const literal = /^'([^']*)'/.exec(rest);
    if (bare) {
      part = bare[0];
      rest = rest.slice(bare[0].length);
    } else if (basic) {
      try {
        part = JSON.parse(basic[0]) as string;
      } catch {
        part = basic[1] ?? "";
      }
      rest = rest.slice(basic[0].length);
    } else if (literal) {
      part = literal[1] ?? "";
      rest = rest.slice(literal[0].length);
    } else {
      return undefined;
    }
    parts.push(part);
    rest = rest.trimStart();
    if (rest === "") return parts;
    if (!rest.startsWith(".")) return undefined;
    rest = rest.slice(1).trimStart();
  }
}

/** Opening minus closing brackets and braces outside strings and comments. */
function bracketBalance(text: string): number {
  let balance = 0;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote !== undefined) {
      if (c === "\\" && quote === '"') i++;
      else if (c === quote) quote = undefined;
      continue;
    }
    if (c === "#") break;
    if (c === '"' || c === "'") quote = c;
    else if (c === "[" || c === "{") balance++;
    else if (c === "]" || c === "}") balance--;
  }
  return balance;
}
