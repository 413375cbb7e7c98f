/**
 * The identity of a guest image: one SHA-256 over every input, each named by
 * its role (a label) and identified by the SHA-256 of its content.
 */
import { createHash } from "node:crypto";
import { sha256File } from "../../src/common/fs.js";

/** One input of the image: a file on the host or bytes made by the build. */
export type HashInput = { readonly label: string; readonly path: string } | { readonly label: string; readonly data: string | Uint8Array };

export interface HashedInput {
  readonly label: string;
  /** SHA-256 of the content, hex. */
  readonly digest: string;
}

/** Bumped when the layout of the image changes in a way the inputs do not show. */
export const IMAGE_FORMAT = "vmpod-guest-1";

/**
 * Combines the digests of the inputs into the image hash. The order of the
 * inputs does not matter; a label may appear only once.
 */
export function combineDigests(inputs: readonly HashedInput[]): string {
  const sorted = [...inputs].sort((a, b) => (a.label < b.label ? -1 : a.label > b.label ? 1 : 0));
  const hash = createHash("sha256").update(IMAGE_FORMAT + "\n");
  let previous: string | undefined;
  for (const input of sorted) {
    if (input.label === previous) throw new RangeError(`guest image input ${input.label} given twice`);
    if (/[\n\0]/.test(input.label)) throw new RangeError(`bad guest image input label ${JSON.stringify(input.label)}`);
    previous = input.label;
    hash.update(`${input.label}\0${input.digest}\n`);
  }
  return hash.digest("hex");
}

/** SHA-256 of a file, hex. */
export const digestFile = sha256File;

export function digestData(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Digests every input (files read concurrently) and combines them. */
export async function hashInputs(inputs: readonly HashInput[]): Promise<{ hash: string; digests: HashedInput[] }> {
  const digests = await Promise.all(
    inputs.map(async (input): Promise<HashedInput> => ({
      label: input.label,
      digest: "path" in input ? await digestFile(input.path) : digestData(input.data),
    })),
  );
  return { hash: combineDigests(digests), digests };
}
