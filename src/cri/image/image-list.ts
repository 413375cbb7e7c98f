/** ListImages: the store's images, filtered by a reference, digest or id. */
import type { ImageMethods, Unary } from "../deps.js";
import { imageFilterFromCri, imageToCri } from "../translate-image.js";

export const listImages: Unary<ImageMethods["listImages"]> = async (deps, request) => ({
  images: deps.images.list(imageFilterFromCri(request.filter)).map(imageToCri),
});
