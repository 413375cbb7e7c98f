/** The config.json a host container's runtime reads: the sandbox layer's spec, completed for the pod. */
import assert from "node:assert/strict";
import type { OciSpec } from "../../../../src/common/oci-spec.js";
import { VmpodError } from "../../../../src/common/errors.js";
import { bundleSpec } from "../../../../src/sandbox/runc/bundle-spec.js";

const NS = { network: "/state/p/ns/net", ipc: "/state/p/ns/ipc", uts: "/state/p/ns/uts" };
const input = { podId: "p", containerId: "c", rootfs: "/state/p/containers/c/bundle/rootfs", readonlyRootfs: true, namespaces: NS };

function spec(extra: Partial<OciSpec> = {}): OciSpec {
  return {
    ociVersion: "1.1.0",
    hostname: "pod-host",
    process: { args: ["sh"], cwd: "/", user: { uid: 0, gid: 0 }, oomScoreAdj: -997 },
    linux: { namespaces: [{ type: "pid" }, { type: "network" }, { type: "uts" }, { type: "ipc" }, { type: "mount" }], cgroupsPath: "/kubepods/pod1/c" },
    ...extra,
  };
}

describe("runc bundle spec", () => {
  it("joins the pod's network, UTS and IPC namespaces and leaves the rest private", () => {
    const out = bundleSpec(spec(), input);
    assert.deepEqual(out.linux?.namespaces, [{ type: "pid" }, { type: "network", path: NS.network }, { type: "uts", path: NS.uts }, { type: "ipc", path: NS.ipc }, { type: "mount" }]);
    assert.equal(out.hostname, undefined, "a container in the pod's UTS namespace must not set the hostname");
  });

  it("keeps what the spec left out (the node's namespaces) and paths it already gave", () => {
    const out = bundleSpec(spec({ linux: { namespaces: [{ type: "pid" }, { type: "ipc", path: "/proc/1/ns/ipc" }, { type: "mount" }], cgroupsPath: "/x/c" } }), input);
    assert.deepEqual(out.linux?.namespaces, [{ type: "pid" }, { type: "ipc", path: "/proc/1/ns/ipc" }, { type: "mount" }]);
    assert.equal(out.hostname, "pod-host");
  });

  it("sets the root, raises a negative oom_score_adj to 0, keeps a positive one", () => {
    const out = bundleSpec(spec(), input);
    assert.deepEqual(out.root, { path: input.rootfs, readonly: true });
    assert.equal(out.process?.oomScoreAdj, 0);
    const positive = bundleSpec(spec({ process: { args: ["sh"], cwd: "/", user: { uid: 0, gid: 0 }, oomScoreAdj: 500 } }), input);
    assert.equal(positive.process?.oomScoreAdj, 500);
  });

  it("defaults the cgroup path under /vmpod/<pod> and refuses systemd or escaping ones", () => {
    const out = bundleSpec(spec({ linux: { namespaces: [], cgroupsPath: "" } }), input);
    assert.equal(out.linux?.cgroupsPath, "/vmpod/p/c");
    for (const bad of ["system.slice:crio:c", "relative/c", "/a/../../c"]) {
      assert.throws(() => bundleSpec(spec({ linux: { namespaces: [], cgroupsPath: bad } }), input), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument", bad);
    }
  });

  it("carries the CRI-O container type and sandbox id, the spec's own annotations first", () => {
    assert.deepEqual(bundleSpec(spec(), input).annotations, { "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "p" });
    const own = bundleSpec(spec({ annotations: { "io.kubernetes.cri-o.SandboxID": "other", a: "b" } }), input);
    assert.deepEqual(own.annotations, { "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "other", a: "b" });
  });

  it("refuses a spec without a process and leaves the input unchanged", () => {
    const s = spec();
    const copy = structuredClone(s);
    bundleSpec(s, input);
    assert.deepEqual(s, copy);
    const noProcess: OciSpec = { ...s };
    delete noProcess.process;
    assert.throws(() => bundleSpec(noProcess, input), (e: unknown) => e instanceof VmpodError && e.kind === "InvalidArgument");
  });
});
