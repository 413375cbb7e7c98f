/**
 * The CRI families, fed through the real instrument wrapper around the real
 * handlers (a fake runtime under them): counts by method and code, errors
 * by code, latency histograms by method.
 */
import assert from "node:assert/strict";
import { create, type DescMessage, type DescService, type MessageInitShape } from "@bufbuild/protobuf";
import { Registry } from "prom-client";
import { createLogger, silentLogger } from "../../../src/common/log.js";
import { VmpodError } from "../../../src/common/errors.js";
import type { CriDeps } from "../../../src/cri/deps.js";
import type { CallContext } from "../../../src/cri/grpc.js";
import { instrument } from "../../../src/cri/instrument.js";
import { runtimeServiceHandlers } from "../../../src/cri/runtime-service.js";
import { CpuRates } from "../../../src/cri/translate-stats.js";
import { RuntimeService } from "../../../src/gen/cri/api_pb.js";
import { CriMetrics } from "../../../src/metrics/cri-metrics.js";
import { containerConfig, FakeImages, FakeRuntime, FakeStreaming, podConfig } from "../cri/fakes.js";
import { parseExposition, valueOf } from "./samples.js";

function context(signal = new AbortController().signal): CallContext {
  return { method: "test", signal };
}

/** Handlers that take init objects and get real messages, as from the wire. */
function creating<H extends object>(service: DescService, handlers: H): H {
  const out: Record<string, unknown> = {};
  for (const method of service.methods) {
    const handler = (handlers as Record<string, (r: unknown, c: CallContext) => unknown>)[method.localName];
    if (handler) out[method.localName] = (init: MessageInitShape<DescMessage>, c: CallContext) => handler(create(method.input, init ?? {}), c);
  }
  return out as H;
}

describe("metrics: CRI families", () => {
  let runtime: FakeRuntime;
  let registry: Registry;
  let ready: boolean;
  let rt: ReturnType<typeof runtimeServiceHandlers>;
  const req = <T>(value: T) => value as never;

  beforeEach(() => {
    runtime = new FakeRuntime();
    registry = new Registry();
    ready = true;
    const deps: CriDeps = { runtime, images: new FakeImages(), streaming: new FakeStreaming(), version: "1.2.3", logger: silentLogger, rates: new CpuRates() };
    rt = creating(RuntimeService, instrument(RuntimeService, runtimeServiceHandlers(deps), { logger: silentLogger, ready: () => ready, observer: new CriMetrics(registry) }));
  });

  it("counts calls by method and code, errors by code, and times each method", async () => {
    await rt.version(req({}), context());
    await rt.version(req({}), context());
    await rt.stopPodSandbox(req({ podSandboxId: "p1" }), context());
    await assert.rejects(rt.podSandboxStatus(req({ podSandboxId: "nope" }), context()));
    await assert.rejects(rt.containerStatus(req({ containerId: "nope" }), context()));
    runtime.failNext = { method: "stopContainer", error: new VmpodError("FailedPrecondition", "busy") };
    await assert.rejects(rt.stopContainer(req({ containerId: "c1", timeout: 1n }), context()));
    ready = false;
    await assert.rejects(rt.listPodSandbox(req({}), context()));

    const s = parseExposition(await registry.metrics());
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "Version", code: "OK" }), 2);
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "StopPodSandbox", code: "OK" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "PodSandboxStatus", code: "NOT_FOUND" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "StopContainer", code: "FAILED_PRECONDITION" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "ListPodSandbox", code: "UNAVAILABLE" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_errors_total", { code: "NOT_FOUND" }), 2);
    assert.equal(valueOf(s, "vmpod_cri_errors_total", { code: "FAILED_PRECONDITION" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_errors_total", { code: "UNAVAILABLE" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_errors_total", { code: "OK" }), undefined);
    assert.equal(valueOf(s, "vmpod_cri_request_duration_seconds_count", { method: "Version" }), 2);
    assert.equal(valueOf(s, "vmpod_cri_request_duration_seconds_bucket", { method: "Version", le: "+Inf" }), 2);
    const sum = valueOf(s, "vmpod_cri_request_duration_seconds_sum", { method: "Version" }) ?? -1;
    assert.ok(sum >= 0 && sum < 5, `Version took ${sum} s in all`);
  });

  it("counts a cancelled stream once, as CANCELLED", async () => {
    const controller = new AbortController();
    const iterator = rt.getContainerEvents(req({}), context(controller.signal))[Symbol.asyncIterator]();
    const pending = iterator.next();
    await new Promise((r) => setImmediate(r));
    controller.abort();
    assert.equal((await pending).done, true);
    const s = parseExposition(await registry.metrics());
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "GetContainerEvents", code: "CANCELLED" }), 1);
    assert.equal(valueOf(s, "vmpod_cri_request_duration_seconds_count", { method: "GetContainerEvents" }), 1);
  });

  it("names in its log line the pod or container a call made, as well as those it was asked about", async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = createLogger({ level: "debug", sink: { write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>) } });
    const deps: CriDeps = { runtime, images: new FakeImages(), streaming: new FakeStreaming(), version: "1.2.3", logger: silentLogger, rates: new CpuRates() };
    const logged = creating(RuntimeService, instrument(RuntimeService, runtimeServiceHandlers(deps), { logger, ready: () => true }));
    const { podSandboxId } = await logged.runPodSandbox(req({ config: podConfig() }), context());
    const { containerId } = await logged.createContainer(req({ podSandboxId, config: containerConfig(), sandboxConfig: podConfig() }), context());
    await logged.startContainer(req({ containerId }), context());
    assert.deepEqual(
      lines.map((l) => [l.method, l.pod, l.container]),
      [
        ["RunPodSandbox", podSandboxId, undefined],
        ["CreateContainer", podSandboxId, containerId],
        ["StartContainer", undefined, containerId],
      ],
    );
  });
});
