/**
 * The installer's KubeApi on a real cluster, with @kubernetes/client-node
 * 1.x: CoreV1Api for the node, NodeV1Api for RuntimeClasses, configured
 * from the pod's service account (in-cluster) or from a kubeconfig.
 */
import { ApiException, CoreV1Api, KubeConfig, NodeV1Api, PatchStrategy, setHeaderOptions, type V1RuntimeClass } from "@kubernetes/client-node";
import { VmpodError, type ErrorKind } from "../common/errors.js";
import type { KubeApi, NodeFacts, RuntimeClassObject } from "./kube-api.js";

/** Where the client finds its cluster: the pod's service account, or a kubeconfig file. */
export type KubeSource = { readonly inCluster: true } | { readonly kubeconfig: string };

export function kubeConfigFrom(source: KubeSource): KubeConfig {
  const kc = new KubeConfig();
  if ("inCluster" in source) kc.loadFromCluster();
  else kc.loadFromFile(source.kubeconfig);
  return kc;
}

/** The kind of an API failure, from its HTTP status. */
function kindOfStatus(code: number): ErrorKind {
  if (code === 404) return "NotFound";
  if (code === 409) return "AlreadyExists";
  if (code === 400 || code === 422) return "InvalidArgument";
  if (code === 401 || code === 403) return "FailedPrecondition";
  if (code === 429) return "ResourceExhausted";
  if (code === 504) return "DeadlineExceeded";
  return code >= 500 ? "Unavailable" : "Internal";
}

function apiError(step: string, err: unknown): VmpodError {
  if (err instanceof ApiException) return new VmpodError(kindOfStatus(err.code), `${step}: HTTP ${err.code}`, { cause: err });
  // No answer at all: the API server is unreachable.
  return new VmpodError("Unavailable", step, { cause: err });
}

function isStatus(err: unknown, code: number): boolean {
  return err instanceof ApiException && err.code === code;
}

export class ClientNodeKubeApi implements KubeApi {
  private readonly core: CoreV1Api;
  private readonly node: NodeV1Api;

  constructor(kc: KubeConfig) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.node = kc.makeApiClient(NodeV1Api);
  }

  async getNode(name: string): Promise<NodeFacts> {
    try {
      const node = await this.core.readNode({ name });
      return { name, labels: { ...(node.metadata?.labels ?? {}) }, containerRuntimeVersion: node.status?.nodeInfo?.containerRuntimeVersion ?? "" };
    } catch (err) {
      throw apiError(`get node ${name}`, err);
    }
  }

  async patchNodeLabels(name: string, labels: Readonly<Record<string, string | null>>): Promise<void> {
    try {
      // A JSON merge patch: a null value removes the label, and removing an absent one is no error.
      await this.core.patchNode({ name, body: { metadata: { labels } } }, setHeaderOptions("Content-Type", PatchStrategy.MergePatch));
    } catch (err) {
      throw apiError(`label node ${name}`, err);
    }
  }

  async listNodeNames(labelSelector: string): Promise<string[]> {
    try {
      const list = await this.core.listNode({ labelSelector });
      return list.items.map((n) => n.metadata?.name ?? "").filter((n) => n !== "");
    } catch (err) {
      throw apiError(`list nodes ${labelSelector}`, err);
    }
  }

  async getRuntimeClass(name: string): Promise<RuntimeClassObject | undefined> {
    try {
      return fromApi(await this.node.readRuntimeClass({ name }));
    } catch (err) {
      if (isStatus(err, 404)) return undefined;
      throw apiError(`get RuntimeClass ${name}`, err);
    }
  }

  async createRuntimeClass(runtimeClass: RuntimeClassObject): Promise<void> {
    try {
      await this.node.createRuntimeClass({ body: runtimeClass as V1RuntimeClass });
    } catch (err) {
      throw apiError(`create RuntimeClass ${runtimeClass.metadata.name}`, err);
    }
  }

  async deleteRuntimeClass(name: string): Promise<void> {
    try {
      await this.node.deleteRuntimeClass({ name });
    } catch (err) {
      if (isStatus(err, 404)) return;
      throw apiError(`delete RuntimeClass ${name}`, err);
    }
  }
}

function fromApi(rc: V1RuntimeClass): RuntimeClassObject {
  const podFixed = rc.overhead?.podFixed;
  const nodeSelector = rc.scheduling?.nodeSelector;
  return {
    apiVersion: rc.apiVersion ?? "node.k8s.io/v1",
    kind: "RuntimeClass",
    metadata: { name: rc.metadata?.name ?? "", ...(rc.metadata?.labels ? { labels: { ...rc.metadata.labels } } : {}) },
    handler: rc.handler,
    ...(podFixed ? { overhead: { podFixed: { ...podFixed } } } : {}),
    ...(nodeSelector ? { scheduling: { nodeSelector: { ...nodeSelector } } } : {}),
  };
}
