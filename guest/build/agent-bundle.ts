/**
 * The guest agent as one CommonJS file for node 20, bundled with esbuild from
 * its TypeScript sources. koffi stays external: its native module is copied
 * into the image beside the bundle (see koffi.ts).
 */
import * as esbuild from "esbuild";
import { dirname, relative, resolve } from "node:path";
import { failedPrecondition, wrap } from "../../src/common/errors.js";
import { exists } from "../../src/common/fs.js";

export interface AgentBundle {
  /** The bundle's JavaScript. */
  readonly code: string;
  /** Absolute paths of every source file esbuild read (from its metafile). */
  readonly inputs: readonly string[];
  /** The directory esbuild named the sources from. */
  readonly workingDir: string;
  /** esbuild's warnings, formatted. */
  readonly warnings: readonly string[];
}

/** Modules the bundle leaves to node's require at run time. */
export const AGENT_EXTERNALS: readonly string[] = ["koffi"];

/**
 * Bundles the agent whose entry point is `entry`. A missing entry point is
 * FailedPrecondition: the agent is written apart from the image build.
 *
 * esbuild names each source in the bundle relative to its working directory:
 * the repository for the agent, the entry's own directory for an entry point
 * outside it (a test's throwaway agent), so that such a bundle does not
 * depend on where the file lies.
 */
export async function bundleAgent(entry: string, repoRoot: string): Promise<AgentBundle> {
  const entryPath = resolve(repoRoot, entry);
  const inside = !relative(repoRoot, entryPath).startsWith("..");
  const workingDir = inside ? repoRoot : dirname(entryPath);
  if (!(await exists(entryPath))) {
    throw failedPrecondition(`guest agent entry point ${inside ? relative(repoRoot, entryPath) : entryPath} does not exist: the guest image cannot be built without its agent`);
  }
  let result: esbuild.BuildResult<{ metafile: true; write: false }>;
  try {
    result = await esbuild.build({
      absWorkingDir: workingDir,
      entryPoints: [entryPath],
      outfile: "agent.js",
      bundle: true,
      platform: "node",
      target: "node20",
      format: "cjs",
      external: [...AGENT_EXTERNALS],
      write: false,
      metafile: true,
      sourcemap: false,
      minify: false,
      legalComments: "none",
      logLevel: "silent",
    });
  } catch (err) {
    throw wrap(`bundle the guest agent ${entryPath}`, err, "FailedPrecondition");
  }
  const output = result.outputFiles.find((file) => file.path.endsWith(".js"));
  if (output === undefined) throw failedPrecondition("esbuild produced no agent bundle");
  const warnings = result.warnings.length === 0 ? [] : await esbuild.formatMessages(result.warnings, { kind: "warning", color: false });
  return {
    code: output.text,
    inputs: Object.keys(result.metafile.inputs)
      // Virtual modules ("(disabled):fs", "ns:name") are not files.
      .filter((input) => !input.startsWith("(") && !/^[a-z-]+:/.test(input))
      .map((input) => resolve(workingDir, input))
      .sort(),
    warnings,
    workingDir,
  };
}
