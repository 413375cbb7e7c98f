/**
 * What the image service tells whoever watches it (the daemon's metrics)
 * about pulls, in its own terms. `quietImageObserver` is the default.
 */

export interface ImageObserver {
  /** Bytes received from a registry (manifests, configs, layers), as they arrive. */
  pullBytes(bytes: number): void;
  /** A pull ended: how long it took, and whether the image is now held. */
  pullEnded(seconds: number, ok: boolean): void;
}

/** Tells nobody anything. */
export const quietImageObserver: ImageObserver = {
  pullBytes() {},
  pullEnded() {},
};
