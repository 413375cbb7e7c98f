/**
 * The image service as the daemon runs it: the registry client and the
 * layer unpacker behind the store. `close()` ends the registry client's
 * connections.
 */
import type { Logger } from "../common/log.js";
import type { ImageConfig } from "../config/types.js";
import type { ImageObserver } from "./observer.js";
import { RegistryClient } from "./registry/client.js";
import { LocalImageService } from "./service.js";
import { TarLayerUnpacker } from "./unpack/index.js";

export interface OpenedImageService {
  readonly service: LocalImageService;
  close(): Promise<void>;
}

/** `observer` is told of pulls and the bytes they receive (metrics). */
export async function openImageService(config: ImageConfig, logger: Logger, observer?: ImageObserver): Promise<OpenedImageService> {
  const registry = new RegistryClient({ hosts: config.registries, logger: logger.child({ part: "registry" }) });
  try {
    const service = await LocalImageService.open({ config, registry, unpacker: new TarLayerUnpacker({ logger }), logger, ...(observer ? { observer } : {}) });
    return { service, close: () => registry.close() };
  } catch (err) {
    await registry.close();
    throw err;
  }
}
