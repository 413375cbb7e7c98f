/**
 * systemd's unit file syntax, as far as the deploy/ checks need it:
 * sections of `Key=value` lines, a key given many times keeping every value
 * in order (an empty one, as in `ExecStart=`, resets the list for systemd,
 * and is kept here so a test can see the reset).
 */
export type Ini = Map<string, Map<string, string[]>>;

export function parseIni(text: string): Ini {
  const sections: Ini = new Map();
  let current: Map<string, string[]> | undefined;
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = (lines[i] ?? "").trim();
    while (line.endsWith("\\") && i + 1 < lines.length) line = line.slice(0, -1) + " " + (lines[++i] ?? "").trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[([^\]]+)\]$/.exec(line);
    if (section) {
      const name = section[1] as string;
      current = sections.get(name) ?? new Map();
      sections.set(name, current);
      continue;
    }
    const eq = line.indexOf("=");
    if (!current || eq < 0) throw new Error(`line ${i + 1} is neither a section nor Key=value: ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

/** The values of a key, with systemd's reset by an empty assignment applied. */
export function values(ini: Ini, section: string, key: string): string[] {
  const all = ini.get(section)?.get(key) ?? [];
  const reset = all.lastIndexOf("");
  return all.slice(reset + 1);
}

/** The one value of a key; throws when it is missing or given more than once. */
export function value(ini: Ini, section: string, key: string): string {
  const v = values(ini, section, key);
  if (v.length !== 1) throw new Error(`[${section}] ${key}: ${v.length} values`);
  return v[0] as string;
}
