/** RemoveImage: removes a reference or an image by id; an image already gone succeeds. */
import { kindOf } from "../../common/errors.js";
import type { ImageMethods, Unary } from "../deps.js";
import { nonEmpty, required } from "../validate.js";

export const removeImage: Unary<ImageMethods["removeImage"]> = async (deps, request) => {
  const reference = nonEmpty(required(request.image, "image").image, "image.image");
  try {
    await deps.images.remove(reference);
  } catch (err) {
    if (kindOf(err) !== "NotFound") throw err;
  }
  return {};
};
