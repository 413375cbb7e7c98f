/** ImageService: every RPC of the CRI's image service, bound to its handler (one file each under image/). */
import type { CriDeps, ImageMethods } from "./deps.js";
import { bindHandlers } from "./bind.js";
import type { ServiceHandlers } from "./grpc.js";
import { imageFsInfo } from "./image/image-fs-info.js";
import { listImages } from "./image/image-list.js";
import { pullImage } from "./image/image-pull.js";
import { removeImage } from "./image/image-remove.js";
import { imageStatus } from "./image/image-status.js";
import { streamImages } from "./image/image-stream.js";

export function imageServiceHandlers(deps: CriDeps): ServiceHandlers<ImageMethods> {
  return bindHandlers<ImageMethods>(deps, { listImages, streamImages, imageStatus, pullImage, removeImage, imageFsInfo });
}
