/**
 * What a restarted daemon finds of the pods and containers it had: each
 * pod's handler asked to find it again; pods half-created when the daemon
 * died dropped with their containers; pods whose handler lost them kept as
 * NOTREADY, with containers that were running or created reported exited.
 * The records on disk are brought up to date as it goes.
 */
import { messageOf } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { ImageService } from "../image/types.js";
import type { PodSandbox, SandboxController } from "./controller.js";
import { nowNs, type ContainerRecord, type PodRecord, type RecordStore } from "./records.js";

export interface Recovered {
  readonly pods: readonly { readonly record: PodRecord; readonly sandbox?: PodSandbox }[];
  readonly containers: readonly ContainerRecord[];
}

export async function recoverRecords(
  records: RecordStore,
  controllers: ReadonlyMap<string, SandboxController>,
  images: Pick<ImageService, "release">,
  logger: Logger,
): Promise<Recovered> {
  const podRecords = await records.loadPods();
  const containerRecords = await records.loadContainers();
  const drop = async (c: ContainerRecord) => {
    await images.release(c.id).catch(() => undefined);
    await records.deleteContainer(c.id);
  };
  const pods: { record: PodRecord; sandbox?: PodSandbox }[] = [];
  for (const record of podRecords) {
    const controller = controllers.get(record.handler);
    const sandbox = controller
      ? await controller.recover(record.id, record.config).catch((err: unknown) => {
          logger.warn("could not recover a pod", { pod: record.id, err: messageOf(err) });
          return undefined;
        })
      : undefined;
    if (record.state === "creating" && !sandbox) {
      // Half-created before the daemon died: nothing of it is kept.
      await records.deletePod(record.id);
      for (const c of containerRecords.filter((c) => c.podId === record.id)) await drop(c);
      continue;
    }
    const now: PodRecord = { ...record, state: sandbox ? "ready" : "notready" };
    await records.savePod(now);
    pods.push(sandbox ? { record: now, sandbox } : { record: now });
  }
  const containers: ContainerRecord[] = [];
  for (const record of containerRecords) {
    const pod = pods.find((p) => p.record.id === record.podId);
    if (!pod) {
      await drop(record);
      continue;
    }
    let r = record;
    if (!pod.sandbox && (r.state === "running" || r.state === "created")) {
      r = { ...r, state: "exited", exitCode: 255, reason: "Error", message: "the pod's VM did not survive the runtime's restart", finishedAt: nowNs().toString() };
      await records.saveContainer(r);
    }
    containers.push(r);
  }
  return { pods, containers };
}
