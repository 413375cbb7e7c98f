/**
 * Image layers given to a pod VM as read-only disks (block layers): each
 * layer's erofs image is added to the VM once, when the first container
 * that needs it is created, mounted once by the guest agent at a mount point
 * every container of the pod shares, and removed when the last such
 * container is removed. The guest overlays them into each container's
 * root filesystem, with the container's writes in the guest.
 */
import { VmpodError, messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { Storage } from "../agent/translate.js";
import type { Hypervisor } from "../hypervisor/hypervisor.js";
import type { RootfsLayers } from "../image/types.js";
import { GUEST_LAYERS_DIR } from "./layout.js";

interface Disk {
  readonly deviceId: string;
  readonly storage: Storage;
  readonly users: Set<string>;
}

/** The layer's key: short, so that many layers fit in one overlay's mount options. */
function layerKey(diffId: string): string {
  return diffId.slice("sha256:".length, "sha256:".length + 24);
}

export class LayerDisks {
  private readonly disks = new Map<string, Promise<Disk>>();
  private readonly byContainer = new Map<string, readonly string[]>();

  constructor(
    private readonly hypervisor: Hypervisor,
    private readonly logger: Logger,
  ) {}

  /**
   * Adds the layers `containerId` needs that the VM lacks and counts the
   * container as their user; returns the storages for the agent: the
   * layers (lowest first), then the overlay at `rootfs`. Undoes its own
   * steps when it fails.
   */
  async acquire(containerId: string, layers: RootfsLayers, rootfs: string, options: { readonly readonly?: boolean } = {}): Promise<Storage[]> {
    if (this.byContainer.has(containerId)) throw new VmpodError("AlreadyExists", `container ${containerId} already holds layers`);
    const taken: string[] = [];
    const storages: Storage[] = [];
    this.byContainer.set(containerId, taken);
    try {
      for (const layer of layers.layers) {
        if (layer.blockImage === undefined) throw new VmpodError("InvalidArgument", `layer ${layer.diffId} has no erofs image (ask the image service for block images)`);
        const key = layerKey(layer.diffId);
        let pending = this.disks.get(key);
        if (!pending) {
          pending = this.attach(key, layer.blockImage);
          this.disks.set(key, pending);
          pending.catch(() => this.disks.delete(key));
        }
        const disk = await pending;
        disk.users.add(containerId);
        taken.push(key);
        storages.push(disk.storage);
      }
      const lowers = storages.map((s) => s.mountPoint).reverse();
      storages.push({ driver: "overlayfs", source: "overlay", fstype: "overlay", options: [`lowerdir=${lowers.join(":")}`, ...(options.readonly ? ["ro"] : [])], mountPoint: rootfs });
      return storages;
    } catch (err) {
      await this.release(containerId).catch((e: unknown) => this.logger.warn("could not release layers after a failure", { container: containerId, err: messageOf(e) }));
      throw err;
    }
  }

  /**
   * Ends `containerId`'s use of its layers; disks no container uses any
   * more leave the VM. Call it only once the guest has let go of the
   * container's mounts (after the agent removed the container).
   */
  async release(containerId: string): Promise<void> {
    const keys = this.byContainer.get(containerId);
    if (!keys) return;
    this.byContainer.delete(containerId);
    const failures: unknown[] = [];
    for (const key of keys) {
      const pending = this.disks.get(key);
      if (!pending) continue;
      const disk = await pending;
      disk.users.delete(containerId);
      if (disk.users.size > 0) continue;
      this.disks.delete(key);
      await this.hypervisor.removeDevice(disk.deviceId).catch((err: unknown) => {
        if (!(err instanceof VmpodError && err.kind === "NotFound")) failures.push(err);
      });
    }
    if (failures.length > 0) throw new VmpodError("Internal", `remove layer disks of ${containerId}`, { cause: new AggregateError(failures, failures.map(messageOf).join("; ")) });
  }

  private async attach(key: string, path: string): Promise<Disk> {
    const deviceId = `layer-${key}`;
    const attached = await this.hypervisor.addDevice({ kind: "block", id: deviceId, path, readonly: true, serial: key });
    if (attached.kind !== "block") throw new VmpodError("Internal", `device ${deviceId} attached as ${attached.kind}`);
    this.logger.debug("layer disk added", { layer: key, source: attached.source });
    return {
      deviceId,
      storage: { driver: attached.storageDriver, source: attached.source, fstype: "erofs", options: ["ro"], mountPoint: `${GUEST_LAYERS_DIR}/${key}` },
      users: new Set(),
    };
  }
}
