/**
 * The ContainerSpecBuilder the daemon uses: buildContainerSpec fed with
 * what the request and the image hold, the image's own /etc/passwd and
 * /etc/group (read from its topmost layer that has them) for user names.
 */
import { lstat, readFile } from "node:fs/promises";
import { join } from "node:path";
import { buildContainerSpec } from "./container-spec.js";
import type { ContainerSpecBuilder, SpecRequest } from "./spec-builder.js";

/** `kindOf(handler)`: "vm" for handlers that run pods in VMs, "host" for namespace containers. */
export function specBuilder(kindOf: (handler: string) => "vm" | "host"): ContainerSpecBuilder {
  return async (request: SpecRequest) => {
    const [passwd, group] = await Promise.all([imageFile(request.layerDirs, "etc/passwd"), imageFile(request.layerDirs, "etc/group")]);
    return buildContainerSpec({
      podId: request.podId,
      pod: request.pod,
      containerId: request.containerId,
      container: request.container,
      image: request.image.config,
      imageName: request.container.image,
      handler: kindOf(request.handler),
      // Each sandbox sets the root where its runtime finds it.
      rootPath: "/rootfs",
      mounts: request.mounts,
      ...(request.podNamespaces ? { podNamespaces: request.podNamespaces } : {}),
      ...(request.podFiles ? { podFiles: request.podFiles } : {}),
      ...(passwd === undefined ? {} : { passwd }),
      ...(group === undefined ? {} : { group }),
    });
  };
}

/**
 * A file of the image as its merged view shows it: the topmost layer that
 * has it (a whiteout or a missing file in every layer: absent). Read as a
 * regular file only; a symlink is not followed out of the layer.
 */
async function imageFile(layerDirs: readonly string[], path: string): Promise<string | undefined> {
  for (const dir of [...layerDirs].reverse()) {
    try {
      const st = await lstat(join(dir, path));
      if (st.isCharacterDevice()) return undefined; // a whiteout
      if (!st.isFile() || st.size > 1 << 20) return undefined;
      return await readFile(join(dir, path), "utf8");
    } catch {
      continue;
    }
  }
  return undefined;
}
