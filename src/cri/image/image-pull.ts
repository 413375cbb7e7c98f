/**
 * PullImage: pulls with the credentials kubelet passes (from the pod's
 * image pull secrets) and answers with the image's id. The pod's config
 * only names the pod in the log.
 */
import type { ImageMethods, Unary } from "../deps.js";
import { credentialsFromCri } from "../translate-image.js";
import { nonEmpty, required } from "../validate.js";

export const pullImage: Unary<ImageMethods["pullImage"]> = async (deps, request, context) => {
  const reference = nonEmpty(required(request.image, "image").image, "image.image");
  const credentials = credentialsFromCri(request.auth);
  const pod = request.sandboxConfig?.metadata;
  // `pod` names a pod by id in every log line; this one has only the pod's name.
  if (pod !== undefined) deps.logger.debug("pull for a pod", { image: reference, podName: `${pod.namespace}/${pod.name}` });
  const record = await deps.images.pull(reference, { signal: context.signal, ...(credentials === undefined ? {} : { credentials }) });
  return { imageRef: record.id };
};
