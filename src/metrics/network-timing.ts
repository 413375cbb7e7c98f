/**
 * A pod network that times each set-up (netns, CNI ADD, the VM's tap) for
 * the metrics, and otherwise is the network it wraps.
 */
import type { PodNetwork, PodNetworkAttachment, PodNetworkRequest, PodNetworkStatus } from "../network/types.js";
import type { Outcome } from "./phase-metrics.js";

export class TimedPodNetwork implements PodNetwork {
  constructor(
    private readonly inner: PodNetwork,
    private readonly setUpEnded: (seconds: number, outcome: Outcome) => void,
  ) {}

  status(): Promise<PodNetworkStatus> {
    return this.inner.status();
  }

  async setUp(request: PodNetworkRequest): Promise<PodNetworkAttachment> {
    const started = performance.now();
    try {
      const attachment = await this.inner.setUp(request);
      this.setUpEnded((performance.now() - started) / 1000, "ok");
      return attachment;
    } catch (err) {
      this.setUpEnded((performance.now() - started) / 1000, "error");
      throw err;
    }
  }

  find(podId: string): Promise<Omit<PodNetworkAttachment, "tapFd"> | undefined> {
    return this.inner.find(podId);
  }

  list(): Promise<string[]> {
    return this.inner.list();
  }

  tearDown(podId: string): Promise<void> {
    return this.inner.tearDown(podId);
  }
}
