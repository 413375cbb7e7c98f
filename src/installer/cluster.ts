/**
 * The installer's side of the cluster: the RuntimeClasses of
 * deploy/runtimeclass.yaml, created when missing (marked as the installer's
 * so that uninstall deletes those and no others, and only once no node
 * serves vmpod any more), and the node label that sends vmpod pods to a node
 * once its kubelet talks to vmpod.
 */
import { readFile } from "node:fs/promises";
import { loadAllYaml } from "@kubernetes/client-node";
import { invalidArgument, kindOf, wrap } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import type { KubeApi, NodeFacts, RuntimeClassObject } from "./kube-api.js";
import { MANAGED_BY_LABEL, MANAGED_BY_VALUE, NODE_LABEL } from "./layout.js";

/** The RuntimeClasses of a YAML file (deploy/runtimeclass.yaml); anything else in it is InvalidArgument. */
export async function loadRuntimeClasses(file: string): Promise<RuntimeClassObject[]> {
  let docs: unknown[];
  try {
    docs = loadAllYaml(await readFile(file, "utf8")) as unknown[];
  } catch (err) {
    throw wrap(`read ${file}`, err, "InvalidArgument");
  }
  return docs
    .filter((d) => d !== null && d !== undefined)
    .map((d, i) => {
      const o = d as Partial<RuntimeClassObject>;
      if (o.kind !== "RuntimeClass" || typeof o.apiVersion !== "string" || typeof o.metadata?.name !== "string" || typeof o.handler !== "string") {
        throw invalidArgument(`${file}: document ${i + 1} is not a RuntimeClass with a name and a handler`);
      }
      return o as RuntimeClassObject;
    });
}

/** True when the node's kubelet reports vmpod as its container runtime. */
export function kubeletUsesVmpod(node: NodeFacts): boolean {
  return node.containerRuntimeVersion.startsWith("vmpod://");
}

export function isLabelled(node: NodeFacts): boolean {
  return node.labels[NODE_LABEL] === "true";
}

/** Creates the RuntimeClasses that do not exist yet; returns the names it created. */
export async function ensureRuntimeClasses(api: KubeApi, classes: readonly RuntimeClassObject[], logger: Logger): Promise<string[]> {
  const created: string[] = [];
  for (const rc of classes) {
    const name = rc.metadata.name;
    const existing = await api.getRuntimeClass(name);
    if (existing) {
      if (existing.handler !== rc.handler) logger.warn("a RuntimeClass of this name exists with another handler; leaving it", { runtimeClass: name, handler: existing.handler, expected: rc.handler });
      continue;
    }
    const marked: RuntimeClassObject = { ...rc, metadata: { ...rc.metadata, labels: { ...(rc.metadata.labels ?? {}), [MANAGED_BY_LABEL]: MANAGED_BY_VALUE } } };
    try {
      await api.createRuntimeClass(marked);
      created.push(name);
      logger.info("RuntimeClass created", { runtimeClass: name, handler: rc.handler });
    } catch (err) {
      // Another node's installer made it meanwhile.
      if (kindOf(err) !== "AlreadyExists") throw wrap(`create RuntimeClass ${name}`, err);
    }
  }
  return created;
}

/**
 * Deletes the installer's RuntimeClasses once no node carries vmpod's label
 * (every node's uninstall removes its own label first, so the last one to
 * look finds none and deletes them). Returns the names it deleted.
 */
export async function removeRuntimeClassesIfLast(api: KubeApi, classes: readonly RuntimeClassObject[], selfNode: string | undefined, logger: Logger): Promise<string[]> {
  const serving = (await api.listNodeNames(`${NODE_LABEL}=true`)).filter((n) => n !== selfNode);
  if (serving.length > 0) {
    logger.info("other nodes still serve vmpod: the RuntimeClasses stay", { nodes: serving });
    return [];
  }
  const deleted: string[] = [];
  for (const rc of classes) {
    const existing = await api.getRuntimeClass(rc.metadata.name);
    if (!existing) continue;
    if (existing.metadata.labels?.[MANAGED_BY_LABEL] !== MANAGED_BY_VALUE) {
      logger.info("leaving a RuntimeClass the installer did not create", { runtimeClass: rc.metadata.name });
      continue;
    }
    await api.deleteRuntimeClass(rc.metadata.name);
    deleted.push(rc.metadata.name);
    logger.info("RuntimeClass deleted", { runtimeClass: rc.metadata.name });
  }
  return deleted;
}

export async function labelNode(api: KubeApi, node: string): Promise<void> {
  await api.patchNodeLabels(node, { [NODE_LABEL]: "true" });
}

export async function unlabelNode(api: KubeApi, node: string): Promise<void> {
  await api.patchNodeLabels(node, { [NODE_LABEL]: null });
}
