/**
 * Every YAML file under deploy/, loaded as Kubernetes objects with
 * @kubernetes/client-node's loadAllYaml, and the fields kubelet, kubeadm,
 * the scheduler and the installer depend on: the CRI socket everywhere it is
 * named, the RuntimeClasses' handlers, overhead and node selection, the
 * sample pod's runtime class and annotation, and the installer's
 * DaemonSet (privileged, host PID, the host's filesystem, its node's name,
 * what its service account may do).
 */
import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import { loadAllYaml } from "@kubernetes/client-node";
import { findRepoRoot } from "../../../src/common/fs.js";
import { defaultConfig } from "../../../src/config/defaults.js";
import { UNTRUSTED_ANNOTATION } from "../../../src/sandbox/pod-manager.js";

// Loose shapes: the checks below say what must be there.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Obj = any;

const SOCKET = `unix://${defaultConfig("/x").cri.socket}`;
/** Configuration kinds of kubeadm and kubelet: files, not API objects, so no metadata. */
const CONFIG_GROUPS = ["kubeadm.k8s.io/", "kubelet.config.k8s.io/"];
const QUANTITY = /^\d+(\.\d+)?(m|Ki|Mi|Gi)?$/;

describe("deploy: Kubernetes YAML", () => {
  let repo: string;
  let files: Map<string, Obj[]>;

  const docs = (file: string): Obj[] => {
    const d = files.get(file);
    if (!d) throw new Error(`deploy/${file} is missing`);
    return d;
  };
  const one = (file: string, kind: string): Obj => {
    const found = docs(file).filter((d) => d.kind === kind);
    assert.equal(found.length, 1, `deploy/${file}: one ${kind}`);
    return found[0];
  };

  before(async () => {
    repo = await findRepoRoot(import.meta.dirname);
    files = new Map();
    for (const rel of (await readdir(join(repo, "deploy"), { recursive: true })).filter((f) => /\.ya?ml$/.test(f)).sort()) {
      // loadAllYaml gives known kinds as client-node's typed models (fields it does not know are
      // dropped, so a misspelt one is missing below); compared here as plain data.
      const loaded = loadAllYaml(await readFile(join(repo, "deploy", rel), "utf8")).filter((d: unknown) => d !== null && d !== undefined);
      files.set(rel, JSON.parse(JSON.stringify(loaded)) as Obj[]);
    }
  });

  it("every YAML file holds objects with apiVersion and kind, and API objects have a name", () => {
    assert.deepEqual(
      [...files.keys()],
      ["examples/untrusted-pod.yaml", "installer/daemonset.yaml", "kubeadm/init.yaml", "kubeadm/join.yaml", "kubelet/kubelet-config.yaml", "runtimeclass.yaml"],
      "a new YAML file needs its checks here",
    );
    for (const [file, objects] of files) {
      assert.ok(objects.length > 0, `deploy/${file} is empty`);
      for (const o of objects) {
        assert.match(o.apiVersion, /^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/, `deploy/${file}: apiVersion of ${o.kind}`);
        assert.match(o.kind, /^[A-Z][A-Za-z]+$/, `deploy/${file}: kind`);
        if (!CONFIG_GROUPS.some((g) => o.apiVersion.startsWith(g))) assert.match(o.metadata?.name ?? "", /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, `deploy/${file}: ${o.kind} name`);
      }
    }
  });

  it("kubeadm's init and join configurations name vmpod's CRI socket; init's kubelet uses it with the cgroupfs driver", () => {
    const init = one("kubeadm/init.yaml", "InitConfiguration");
    assert.equal(init.apiVersion, "kubeadm.k8s.io/v1beta4");
    assert.equal(init.nodeRegistration.criSocket, SOCKET);
    // v1beta4 gives extra arguments as a list of name/value pairs.
    assert.deepEqual(init.nodeRegistration.kubeletExtraArgs, [{ name: "node-labels", value: "vmpod.io/runtime=true" }]);
    const cluster = one("kubeadm/init.yaml", "ClusterConfiguration");
    assert.equal(cluster.apiVersion, "kubeadm.k8s.io/v1beta4");
    assert.match(cluster.kubernetesVersion, /^v1\.\d+\.\d+$/);
    assert.match(cluster.networking.podSubnet, /^\d+\.\d+\.\d+\.\d+\/\d+$/);
    const kubelet = one("kubeadm/init.yaml", "KubeletConfiguration");
    assert.equal(kubelet.containerRuntimeEndpoint, SOCKET);
    assert.equal(kubelet.cgroupDriver, "cgroupfs");

    const join = one("kubeadm/join.yaml", "JoinConfiguration");
    assert.equal(join.apiVersion, "kubeadm.k8s.io/v1beta4");
    assert.equal(join.nodeRegistration.criSocket, SOCKET);
    assert.match(join.discovery.bootstrapToken.apiServerEndpoint, /:\d+$/);
    assert.match(join.discovery.bootstrapToken.token, /^[a-z0-9]{6}\.[a-z0-9]{16}$/);
  });

  it("kubelet's configuration file points at vmpod with the cgroupfs driver", () => {
    const kubelet = one("kubelet/kubelet-config.yaml", "KubeletConfiguration");
    assert.equal(kubelet.apiVersion, "kubelet.config.k8s.io/v1beta1");
    assert.equal(kubelet.containerRuntimeEndpoint, SOCKET);
    assert.equal(kubelet.cgroupDriver, "cgroupfs");
  });

  it("RuntimeClasses vmpod (with the VM's overhead) and runc (without) select vmpod nodes, and their handlers are the daemon's", () => {
    const classes = docs("runtimeclass.yaml");
    assert.deepEqual(classes.map((c) => `${c.apiVersion} ${c.kind} ${c.metadata.name}`), ["node.k8s.io/v1 RuntimeClass vmpod", "node.k8s.io/v1 RuntimeClass runc"]);
    const handlers = defaultConfig("/x").runtime.handlers;
    const [vm, runc] = classes;
    assert.equal(vm.handler, "vmpod");
    assert.equal(handlers[vm.handler]?.type, "vm");
    assert.deepEqual(Object.keys(vm.overhead.podFixed).sort(), ["cpu", "memory"]);
    for (const q of Object.values(vm.overhead.podFixed)) assert.match(String(q), QUANTITY);
    assert.equal(runc.handler, "runc");
    assert.equal(handlers[runc.handler]?.type, "oci");
    assert.equal(runc.overhead, undefined);
    for (const c of classes) assert.deepEqual(c.scheduling.nodeSelector, { "vmpod.io/runtime": "true" });
  });

  it("the sample pod asks for the vmpod RuntimeClass and is marked untrusted", () => {
    const pod = one("examples/untrusted-pod.yaml", "Pod");
    assert.equal(pod.apiVersion, "v1");
    assert.equal(pod.spec.runtimeClassName, "vmpod");
    assert.equal(pod.metadata.annotations[UNTRUSTED_ANNOTATION], "true");
    assert.ok(pod.spec.containers.length > 0 && pod.spec.containers.every((c: Obj) => typeof c.image === "string" && c.image !== ""));
  });

  it("the installer's DaemonSet runs privileged with the host's PIDs and filesystem, its node's name, and the installer", () => {
    const ds = one("installer/daemonset.yaml", "DaemonSet");
    assert.equal(ds.apiVersion, "apps/v1");
    assert.deepEqual(ds.spec.selector.matchLabels, Object.fromEntries(Object.keys(ds.spec.selector.matchLabels).map((k) => [k, ds.spec.template.metadata.labels[k]])));
    const pod = ds.spec.template.spec;
    assert.equal(pod.hostPID, true, "systemctl runs in PID 1's mount namespace");
    assert.ok(pod.terminationGracePeriodSeconds >= 60, "time to uninstall on SIGTERM");
    assert.equal(pod.containers.length, 1);
    const c = pod.containers[0];
    assert.equal(c.securityContext.privileged, true);
    assert.deepEqual(c.command, ["node", "/opt/vmpod-installer/dist/src/installer/main.js"]);
    assert.equal(c.args[0], "install");
    assert.ok(c.args.includes("--stay"), "it stays, to uninstall on SIGTERM");
    assert.ok(c.args.includes("--host-root=/host"));
    assert.ok(c.args.includes("--node-name=$(NODE_NAME)"), "the node's name reaches the installer as an argument");
    const nodeName = c.env.find((e: Obj) => e.name === "NODE_NAME");
    assert.deepEqual(nodeName?.valueFrom, { fieldRef: { fieldPath: "spec.nodeName" } });

    const hostPaths = new Map<string, string>(pod.volumes.map((v: Obj) => [v.name, v.hostPath?.path]));
    const mounted = new Map<string, string>(c.volumeMounts.map((m: Obj) => [hostPaths.get(m.name), m.mountPath]));
    assert.deepEqual(Object.fromEntries(mounted), { "/": "/host", "/etc": "/host/etc", "/run": "/host/run", "/var/lib": "/host/var/lib" });
    for (const m of c.volumeMounts) assert.notEqual(m.readOnly, true, `${m.mountPath} is written`);
  });

  it("the installer's service account may read and label nodes and manage RuntimeClasses, and nothing else", () => {
    const sa = one("installer/daemonset.yaml", "ServiceAccount");
    const role = one("installer/daemonset.yaml", "ClusterRole");
    const binding = one("installer/daemonset.yaml", "ClusterRoleBinding");
    const ds = one("installer/daemonset.yaml", "DaemonSet");
    assert.equal(ds.spec.template.spec.serviceAccountName, sa.metadata.name);
    assert.equal(ds.metadata.namespace, sa.metadata.namespace);
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: role.metadata.name });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: sa.metadata.name, namespace: sa.metadata.namespace }]);
    const grants = role.rules.flatMap((r: Obj) => r.apiGroups.flatMap((g: string) => r.resources.flatMap((res: string) => r.verbs.map((v: string) => `${g}/${res}:${v}`)))).sort();
    assert.deepEqual(grants, ["/nodes:get", "/nodes:list", "/nodes:patch", "node.k8s.io/runtimeclasses:create", "node.k8s.io/runtimeclasses:delete", "node.k8s.io/runtimeclasses:get"]);
  });
});
