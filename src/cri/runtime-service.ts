/**
 * RuntimeService: every RPC of the CRI's runtime service, bound to its
 * handler (one file each under runtime/). The mapped type makes a missing
 * handler a compile error.
 */
import type { CriDeps, RuntimeMethods } from "./deps.js";
import { bindHandlers } from "./bind.js";
import type { ServiceHandlers } from "./grpc.js";
import { checkpointContainer } from "./runtime/checkpoint.js";
import { attach } from "./runtime/container-attach.js";
import { createContainer } from "./runtime/container-create.js";
import { execSync } from "./runtime/container-exec-sync.js";
import { exec } from "./runtime/container-exec.js";
import { listContainers } from "./runtime/container-list.js";
import { removeContainer } from "./runtime/container-remove.js";
import { reopenContainerLog } from "./runtime/container-reopen-log.js";
import { startContainer } from "./runtime/container-start.js";
import { containerStats } from "./runtime/container-stats.js";
import { listContainerStats } from "./runtime/container-stats-list.js";
import { streamContainerStats } from "./runtime/container-stats-stream.js";
import { containerStatus } from "./runtime/container-status.js";
import { stopContainer } from "./runtime/container-stop.js";
import { streamContainers } from "./runtime/container-stream.js";
import { updateContainerResources } from "./runtime/container-update.js";
import { getContainerEvents } from "./runtime/events.js";
import { listMetricDescriptors } from "./runtime/metrics.js";
import { runtimeConfig } from "./runtime/runtime-config.js";
import { updateRuntimeConfig } from "./runtime/runtime-config-update.js";
import { listPodSandbox } from "./runtime/sandbox-list.js";
import { listPodSandboxMetrics } from "./runtime/sandbox-metrics.js";
import { streamPodSandboxMetrics } from "./runtime/sandbox-metrics-stream.js";
import { portForward } from "./runtime/sandbox-port-forward.js";
import { removePodSandbox } from "./runtime/sandbox-remove.js";
import { runPodSandbox } from "./runtime/sandbox-run.js";
import { podSandboxStats } from "./runtime/sandbox-stats.js";
import { listPodSandboxStats } from "./runtime/sandbox-stats-list.js";
import { streamPodSandboxStats } from "./runtime/sandbox-stats-stream.js";
import { podSandboxStatus } from "./runtime/sandbox-status.js";
import { stopPodSandbox } from "./runtime/sandbox-stop.js";
import { streamPodSandboxes } from "./runtime/sandbox-stream.js";
import { updatePodSandboxResources } from "./runtime/sandbox-update-resources.js";
import { status } from "./runtime/status.js";
import { version } from "./runtime/version.js";

export function runtimeServiceHandlers(deps: CriDeps): ServiceHandlers<RuntimeMethods> {
  return bindHandlers<RuntimeMethods>(deps, {
    version,
    runPodSandbox,
    stopPodSandbox,
    removePodSandbox,
    podSandboxStatus,
    listPodSandbox,
    streamPodSandboxes,
    createContainer,
    startContainer,
    stopContainer,
    removeContainer,
    listContainers,
    streamContainers,
    containerStatus,
    updateContainerResources,
    reopenContainerLog,
    execSync,
    exec,
    attach,
    portForward,
    containerStats,
    listContainerStats,
    streamContainerStats,
    podSandboxStats,
    listPodSandboxStats,
    streamPodSandboxStats,
    updateRuntimeConfig,
    status,
    checkpointContainer,
    getContainerEvents,
    listMetricDescriptors,
    listPodSandboxMetrics,
    streamPodSandboxMetrics,
    runtimeConfig,
    updatePodSandboxResources,
  });
}
