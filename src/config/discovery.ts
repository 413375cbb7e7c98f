/**
 * Which configuration file is in force: `--config PATH`, else the file named
 * by VMPOD_CONFIG, else /etc/vmpod/configuration.toml, else the packaged
 * default (config/configuration.toml in vmpod's installation), else the
 * built-in defaults. A file named on the command line or in the environment
 * must exist; the two standard places are taken only when they do.
 */
import { join } from "node:path";
import { VmpodError } from "../common/errors.js";
import { exists } from "../common/fs.js";

export const SYSTEM_CONFIG_PATH = "/etc/vmpod/configuration.toml";

/** The packaged default of an installation whose root (where package.json is) is `installRoot`. */
export function packagedConfigPath(installRoot: string): string {
  return join(installRoot, "config", "configuration.toml");
}

export type ConfigOrigin = "--config" | "VMPOD_CONFIG" | "system" | "packaged";

export interface ConfigCandidate {
  readonly origin: ConfigOrigin;
  /** Undefined when the flag or the variable is not given. */
  readonly path: string | undefined;
  readonly exists: boolean;
}

export interface ConfigChoice {
  /** Every place looked at, in order. */
  readonly candidates: readonly ConfigCandidate[];
  /** The one in force; undefined: the built-in defaults. */
  readonly inForce: ConfigCandidate | undefined;
  /** Why no configuration can be read (a named file that is missing). */
  readonly problem?: string;
}

export interface DiscoveryInputs {
  /** --config. */
  readonly flag?: string | undefined;
  /** VMPOD_CONFIG (empty: unset). */
  readonly env?: string | undefined;
  readonly system?: string;
  readonly packaged: string;
}

/** Looks at each place in order; `fileExists` is a parameter for tests. */
export async function chooseConfigFile(inputs: DiscoveryInputs, fileExists: (path: string) => Promise<boolean> = exists): Promise<ConfigChoice> {
  const places: { origin: ConfigOrigin; path: string | undefined }[] = [
    { origin: "--config", path: inputs.flag === "" ? undefined : inputs.flag },
    { origin: "VMPOD_CONFIG", path: inputs.env === "" ? undefined : inputs.env },
    { origin: "system", path: inputs.system ?? SYSTEM_CONFIG_PATH },
    { origin: "packaged", path: inputs.packaged },
  ];
  const candidates = await Promise.all(places.map(async (p) => ({ ...p, exists: p.path !== undefined && (await fileExists(p.path)) })));
  const named = candidates.find((c) => (c.origin === "--config" || c.origin === "VMPOD_CONFIG") && c.path !== undefined);
  if (named !== undefined) {
    return named.exists ? { candidates, inForce: named } : { candidates, inForce: undefined, problem: `${named.origin} names ${named.path}, which does not exist` };
  }
  return { candidates, inForce: candidates.find((c) => c.path !== undefined && c.exists) };
}

/** The path of the file in force; FailedPrecondition when a named file is missing. */
export function fileInForce(choice: ConfigChoice): string | undefined {
  if (choice.problem !== undefined) throw new VmpodError("FailedPrecondition", `configuration: ${choice.problem}`);
  return choice.inForce?.path;
}

/** `vmpod config paths`: one line a place, in order, saying which exist and which is in force. */
export function renderConfigPaths(choice: ConfigChoice): string {
  const width = Math.max(...choice.candidates.map((c) => (c.path ?? "-").length));
  const lines = choice.candidates.map((c) => {
    const mark = c === choice.inForce ? "*" : " ";
    const state =
      c.path === undefined ? (c.origin === "--config" ? "not given" : "not set") : c.exists ? (c === choice.inForce ? "exists, in force" : "exists") : "missing";
    return `${mark} ${c.origin.padEnd(12)} ${(c.path ?? "-").padEnd(width)}  ${state}`;
  });
  if (choice.problem !== undefined) lines.push(`error: ${choice.problem}`);
  else if (choice.inForce === undefined) lines.push("* built-in defaults in force (no file found)");
  return lines.join("\n") + "\n";
}
