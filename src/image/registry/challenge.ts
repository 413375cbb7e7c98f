/**
 * `WWW-Authenticate` challenges (RFC 9110 §11.6.1): a scheme, then
 * comma-separated `name=value` parameters whose values are tokens or quoted
 * strings with backslash escapes; one header may carry several challenges.
 */
export interface Challenge {
  /** Lowercase: "bearer", "basic". */
  readonly scheme: string;
  /** Parameter names lowercased: realm, service, scope, error. */
  readonly params: Readonly<Record<string, string>>;
}

const TOKEN_CHAR = /[A-Za-z0-9!#$%&'*+.^_`|~-]/;

export function parseWwwAuthenticate(values: string | readonly string[]): Challenge[] {
  const out: Challenge[] = [];
  for (const value of typeof values === "string" ? [values] : values) out.push(...parseOne(value));
  return out;
}

function parseOne(s: string): Challenge[] {
  const out: Challenge[] = [];
  let i = 0;
  const skip = (chars: RegExp) => {
    while (i < s.length && chars.test(s[i] ?? "")) i++;
  };
  const token = (): string => {
    const start = i;
    while (i < s.length && TOKEN_CHAR.test(s[i] ?? "")) i++;
    return s.slice(start, i);
  };
  const quoted = (): string => {
    let v = "";
    i++; // opening quote
    while (i < s.length && s[i] !== '"') {
      if (s[i] === "\\" && i + 1 < s.length) i++;
      v += s[i];
      i++;
    }
    i++; // closing quote (or past the end)
    return v;
  };

  while (i < s.length) {
    skip(/[\s,]/);
    const scheme = token();
    if (scheme === "") {
      i++; // not a token: skip what cannot be read
      continue;
    }
    const params: Record<string, string> = {};
    for (;;) {
      skip(/[\s,]/);
      const mark = i;
      const name = token();
      skip(/\s/);
      if (name === "" || s[i] !== "=") {
        // Not a parameter: the next challenge's scheme (or the end).
        i = mark;
        break;
      }
      i++;
      skip(/\s/);
      params[name.toLowerCase()] = s[i] === '"' ? quoted() : token();
    }
    out.push({ scheme: scheme.toLowerCase(), params });
  }
  return out;
}
