/**
 * GetContainerEvents: a live stream of container lifecycle events, each
 * with the pod's status and all its containers' statuses at that moment
 * (what evented PLEG reads), until the client cancels.
 */
import { kindOf } from "../../common/errors.js";
import { ContainerEventType } from "../../gen/cri/api_pb.js";
import type { ContainerEvent, PodStatus } from "../../sandbox/types.js";
import type { RuntimeMethods, Streaming } from "../deps.js";
import { containerStatusToCri } from "../translate-container.js";
import { podStatusToCri } from "../translate-pod.js";

const TYPES: Readonly<Record<ContainerEvent["type"], ContainerEventType>> = {
  created: ContainerEventType.CONTAINER_CREATED_EVENT,
  started: ContainerEventType.CONTAINER_STARTED_EVENT,
  stopped: ContainerEventType.CONTAINER_STOPPED_EVENT,
  deleted: ContainerEventType.CONTAINER_DELETED_EVENT,
};

export const getContainerEvents: Streaming<RuntimeMethods["getContainerEvents"]> = async function* (deps, _request, context) {
  for await (const event of deps.runtime.events({ signal: context.signal })) {
    let pod: PodStatus | undefined;
    try {
      pod = deps.runtime.podStatus(event.podId);
    } catch (err) {
      if (kindOf(err) !== "NotFound") throw err;
    }
    const containers = pod === undefined ? [] : deps.runtime.listContainers({ podId: pod.id });
    yield {
      containerId: event.containerId,
      containerEventType: TYPES[event.type],
      createdAt: event.at,
      ...(pod === undefined ? {} : { podSandboxStatus: podStatusToCri(pod) }),
      containersStatuses: containers.map(containerStatusToCri),
    };
    if (context.signal.aborted) return;
  }
};
