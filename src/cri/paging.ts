/**
 * The streaming list RPCs (StreamPodSandboxes, StreamContainers, ...) send
 * a list in pages of at least one item, each item once, then end: kubelet
 * uses them where one message could pass gRPC's size limit.
 */

/** Items per page: small enough for a page of containers with many labels to stay far below 4 MiB. */
export const PAGE_SIZE = 100;

export function* pages<T>(items: readonly T[], size = PAGE_SIZE): Generator<T[]> {
  for (let i = 0; i < items.length; i += size) yield items.slice(i, i + size);
}
