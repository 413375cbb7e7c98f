import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { parseNetworkList } from "../../../src/network/cni-config.js";
import { cniPortMappings, formatCniArgs, kubernetesCniArgs, pluginEnv, pluginStdin, runtimeConfigFor } from "../../../src/network/cni-request.js";
import { parseCniResult } from "../../../src/network/cni-result.js";

const POD = "a".repeat(64);

describe("CNI plugin calls", () => {
  const list = parseNetworkList(
    JSON.stringify({
      cniVersion: "0.4.0",
      name: "pods",
      plugins: [
        { type: "bridge", bridge: "br0", prevResult: { stale: true } },
        { type: "portmap", capabilities: { portMappings: true, bandwidth: true }, runtimeConfig: { written: 1 } },
      ],
    }),
    "f",
  );
  const [bridge, portmap] = list.plugins;
  if (!bridge || !portmap) throw new Error("two plugins");

  it("gives CNI_ARGS with the Kubernetes keys in kubelet's runtimes' order", () => {
    const args = kubernetesCniArgs({ name: "web-0", namespace: "default", uid: "0b5c-11" }, POD);
    assert.equal(formatCniArgs(args), `IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=${POD};K8S_POD_UID=0b5c-11`);
  });

  it("refuses CNI_ARGS values that would change their meaning", () => {
    const refused = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";
    assert.throws(() => formatCniArgs([["K8S_POD_NAME", "a;IgnoreUnknown=0"]]), refused);
    assert.throws(() => formatCniArgs([["K=", "v"]]), refused);
    assert.throws(() => formatCniArgs([["", "v"]]), refused);
  });

  it("passes only port mappings with a host port, with hostIP only when one is given", () => {
    assert.deepEqual(
      cniPortMappings([
        { protocol: "tcp", containerPort: 80, hostPort: 8080, hostIp: "" },
        { protocol: "udp", containerPort: 53, hostPort: 5353, hostIp: "127.0.0.1" },
        { protocol: "sctp", containerPort: 9, hostPort: 0, hostIp: "" },
      ]),
      [
        { hostPort: 8080, containerPort: 80, protocol: "tcp" },
        { hostPort: 5353, containerPort: 53, protocol: "udp", hostIP: "127.0.0.1" },
      ],
    );
  });

  it("gives runtimeConfig only for the capabilities a plugin declares and the runtime has values for", () => {
    const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] };
    assert.equal(runtimeConfigFor(bridge, caps), undefined);
    assert.deepEqual(runtimeConfigFor(portmap, caps), { portMappings: caps.portMappings });
    assert.equal(runtimeConfigFor(portmap, {}), undefined);
  });

  it("writes the plugin's stdin: its object, the network's name and version, runtimeConfig and prevResult", () => {
    const caps = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: "tcp" }] };
    const first = JSON.parse(pluginStdin(list, bridge, caps, undefined)) as Record<string, unknown>;
    assert.deepEqual(first, { type: "bridge", bridge: "br0", name: "pods", cniVersion: "0.4.0" });
    const prev = parseCniResult({ cniVersion: "1.0.0", ips: [{ address: "10.0.0.5/24" }] }, "r");
    const second = JSON.parse(pluginStdin(list, portmap, caps, prev)) as Record<string, unknown>;
    assert.deepEqual(second, {
      type: "portmap",
      capabilities: { portMappings: true, bandwidth: true },
      runtimeConfig: { written: 1, portMappings: caps.portMappings },
      name: "pods",
      cniVersion: "0.4.0",
      prevResult: { cniVersion: "0.4.0", ips: [{ version: "4", address: "10.0.0.5/24" }], dns: {} },
    });
  });

  it("sets the CNI_* environment", () => {
    const rt = { containerId: POD, netnsPath: "/run/netns/x", ifName: "eth0", args: [["IgnoreUnknown", "1"]] as const, capabilityArgs: {} };
    assert.deepEqual(pluginEnv("ADD", rt, ["/opt/cni/bin", "/usr/lib/cni"]), {
      CNI_COMMAND: "ADD",
      CNI_CONTAINERID: POD,
      CNI_NETNS: "/run/netns/x",
      CNI_IFNAME: "eth0",
      CNI_ARGS: "IgnoreUnknown=1",
      CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
    });
    assert.deepEqual(pluginEnv("VERSION", undefined, ["/b"]), { CNI_COMMAND: "VERSION", CNI_PATH: "/b" });
    assert.equal(pluginEnv("DEL", { ...rt, netnsPath: "" }, ["/b"]).CNI_NETNS, "");
  });
});
