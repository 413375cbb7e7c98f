/**
 * The CRI families: every call kubelet or crictl makes, counted by method
 * and status code, failures counted by code, and the time each method
 * takes. Fed by the CRI server's instrument wrapper (a CallObserver).
 */
import { Counter, Histogram, type Registry } from "prom-client";
import type { CallObserver } from "../cri/instrument.js";

/** From a quick status call to a VM boot or an image pull under TCG. */
const CALL_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class CriMetrics implements CallObserver {
  private readonly calls: Counter<"method" | "code">;
  private readonly errors: Counter<"code">;
  private readonly seconds: Histogram<"method">;

  constructor(registry: Registry) {
    this.calls = new Counter({
      name: "vmpod_cri_requests_total",
      help: "CRI calls answered, by method and gRPC status code.",
      labelNames: ["method", "code"] as const,
      registers: [registry],
    });
    this.errors = new Counter({
      name: "vmpod_cri_errors_total",
      help: "CRI calls that ended with a status other than OK, by gRPC status code.",
      labelNames: ["code"] as const,
      registers: [registry],
    });
    this.seconds = new Histogram({
      name: "vmpod_cri_request_duration_seconds",
      help: "Seconds from a CRI request to its status, by method (for a stream, its whole life).",
      labelNames: ["method"] as const,
      buckets: CALL_BUCKETS,
      registers: [registry],
    });
  }

  callEnded(method: string, code: string, seconds: number): void {
    this.calls.inc({ method, code });
    if (code !== "OK") this.errors.inc({ code });
    this.seconds.observe({ method }, seconds);
  }
}
