/** ImageFsInfo: bytes and inodes used by the image store and by containers' writable layers. */
import type { ImageMethods, Unary } from "../deps.js";
import { filesystemUsageToCri } from "../translate-image.js";

export const imageFsInfo: Unary<ImageMethods["imageFsInfo"]> = async (deps) => {
  const usage = await deps.images.fsInfo();
  return { imageFilesystems: [filesystemUsageToCri(usage.images)], containerFilesystems: [filesystemUsageToCri(usage.containers)] };
};
