/**
 * What the installer asks of the Kubernetes API: its node (labels, the
 * runtime its kubelet reports), the nodes that carry vmpod's label, and the
 * RuntimeClasses. In domain terms; the client-node implementation is in
 * kube-client.ts, tests use a fake.
 */

/** A node as the installer needs it. */
export interface NodeFacts {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  /** What kubelet reports of its runtime: "vmpod://0.1.0", "containerd://1.7.24", or "" before it knows. */
  readonly containerRuntimeVersion: string;
}

/** A RuntimeClass object, as in deploy/runtimeclass.yaml. */
export interface RuntimeClassObject {
  readonly apiVersion: string;
  readonly kind: "RuntimeClass";
  readonly metadata: { readonly name: string; readonly labels?: Readonly<Record<string, string>> };
  readonly handler: string;
  readonly overhead?: { readonly podFixed: Readonly<Record<string, string>> };
  readonly scheduling?: { readonly nodeSelector?: Readonly<Record<string, string>> };
}

export interface KubeApi {
  /** The node by name; NotFound when there is none. */
  getNode(name: string): Promise<NodeFacts>;
  /** Sets labels on a node (null removes the label; removing an absent label is no error). */
  patchNodeLabels(name: string, labels: Readonly<Record<string, string | null>>): Promise<void>;
  /** Names of the nodes matching a label selector ("vmpod.io/runtime=true"). */
  listNodeNames(labelSelector: string): Promise<string[]>;
  /** A RuntimeClass by name, undefined when there is none. */
  getRuntimeClass(name: string): Promise<RuntimeClassObject | undefined>;
  /** Creates a RuntimeClass; AlreadyExists when one has its name. */
  createRuntimeClass(runtimeClass: RuntimeClassObject): Promise<void>;
  /** Deletes a RuntimeClass; one that is gone already is no error. */
  deleteRuntimeClass(name: string): Promise<void>;
}
