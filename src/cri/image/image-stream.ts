/** StreamImages: ListImages' answer in pages. */
import type { ImageMethods, Streaming } from "../deps.js";
import { pages } from "../paging.js";
import { imageFilterFromCri, imageToCri } from "../translate-image.js";

export const streamImages: Streaming<ImageMethods["streamImages"]> = async function* (deps, request) {
  const items = deps.images.list(imageFilterFromCri(request.filter)).map(imageToCri);
  for (const page of pages(items)) yield { images: page };
};
