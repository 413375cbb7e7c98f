/**
 * ImageStatus: the image a reference, digest or id names; an absent image
 * is an empty answer, not an error. With `verbose`, the stored manifest and
 * config as JSON (what crictl inspecti shows).
 */
import type { ImageMethods, Unary } from "../deps.js";
import { jsonReplacer } from "../translate-pod.js";
import { imageToCri } from "../translate-image.js";
import { nonEmpty, required } from "../validate.js";

export const imageStatus: Unary<ImageMethods["imageStatus"]> = async (deps, request) => {
  const reference = nonEmpty(required(request.image, "image").image, "image.image");
  const record = deps.images.find(reference);
  if (record === undefined) return {};
  if (!request.verbose) return { image: imageToCri(record) };
  const described = await deps.images.describe(record.id);
  const info = { id: record.id, repoTags: record.repoTags, repoDigests: record.repoDigests, pulledAt: record.pulledAt, manifest: described.manifest, imageSpec: described.config };
  return { image: imageToCri(record), info: { info: JSON.stringify(info, jsonReplacer) } };
};
