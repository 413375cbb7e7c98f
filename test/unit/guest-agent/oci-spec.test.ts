import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { create } from "@bufbuild/protobuf";
import { LinuxResourcesSchema, ProcessSchema, SpecSchema } from "../../../src/gen/agent_pb.js";
import { processToOci, renderJson, resourcesToOci, specToOci } from "../../../guest/agent/oci-spec.js";

const GOLDEN = join(dirname(fileURLToPath(import.meta.url)), "golden");
/** Set VMPOD_UPDATE_GOLDEN=1 to rewrite the golden files after a deliberate change. */
const UPDATE = process.env["VMPOD_UPDATE_GOLDEN"] === "1";

async function golden(name: string, actual: string): Promise<void> {
  const path = join(GOLDEN, name);
  if (UPDATE) await writeFile(path, actual);
  assert.equal(actual, await readFile(path, "utf8"), `${name} differs from the golden file`);
}

const MAX_U64 = 18446744073709551615n;

function fullSpec() {
  return create(SpecSchema, {
    Version: "1.1.0",
    Process: {
      Terminal: true,
      ConsoleSize: { Height: 24, Width: 80 },
      User: { UID: 1000, GID: 1000, AdditionalGids: [10, 20], Username: "ignored-on-linux" },
      Args: ["/bin/sh", "-c", "echo \"quoted\" \\ and \n newline"],
      Env: ["PATH=/usr/bin:/bin", "HOME=/root"],
      Cwd: "/work",
      Capabilities: { Bounding: ["CAP_KILL", "CAP_CHOWN"], Effective: ["CAP_KILL"], Inheritable: [], Permitted: ["CAP_KILL"], Ambient: [] },
      Rlimits: [
        { Type: "RLIMIT_NOFILE", Hard: 1048576n, Soft: 1024n },
        { Type: "RLIMIT_CORE", Hard: MAX_U64, Soft: MAX_U64 },
      ],
      NoNewPrivileges: true,
      ApparmorProfile: "runtime/default",
      OOMScoreAdj: 500n,
      SelinuxLabel: "",
    },
    Root: { Path: "/run/vmpod/shared/c1/rootfs", Readonly: true },
    Hostname: "web-0",
    Mounts: [
      { destination: "/proc", type: "proc", source: "proc", options: [] },
      { destination: "/etc/hosts", type: "bind", source: "/run/vmpod/shared/c1/hosts", options: ["rbind", "ro"] },
    ],
    Annotations: { "io.kubernetes.cri-o.ContainerType": "container", "io.kubernetes.cri-o.SandboxID": "abc" },
    Linux: {
      Sysctl: { "net.ipv4.ip_forward": "1" },
      Resources: {
        Devices: [
          { Allow: false, Type: "", Major: -1n, Minor: -1n, Access: "rwm" },
          { Allow: true, Type: "c", Major: 1n, Minor: 3n, Access: "rw" },
          { Allow: true, Type: "c", Major: 136n, Minor: -1n, Access: "rwm" },
        ],
        Memory: { Limit: 268435456n, Reservation: 0n, Swap: 536870912n, Swappiness: 0n, DisableOOMKiller: false },
        CPU: { Shares: 512n, Quota: 50000n, Period: 100000n, Cpus: "0-1", Mems: "" },
        Pids: { Limit: 1024n },
      },
      CgroupsPath: "/kubepods/pod1/c1",
      Namespaces: [
        { Type: "pid", Path: "" },
        { Type: "mount", Path: "" },
        { Type: "network", Path: "/var/run/netns/x" },
      ],
      Devices: [{ Path: "/dev/fuse", Type: "c", Major: 10n, Minor: 229n, FileMode: 0o666, UID: 0, GID: 0 }],
      Seccomp: {
        DefaultAction: "SCMP_ACT_ERRNO",
        Architectures: ["SCMP_ARCH_X86_64"],
        Flags: ["SECCOMP_FILTER_FLAG_LOG"],
        Syscalls: [
          { Names: ["read", "write"], Action: "SCMP_ACT_ALLOW", Args: [] },
          { Names: ["personality"], Action: "SCMP_ACT_ALLOW", Args: [{ Index: 0n, Value: 0xffffffffn, ValueTwo: 0n, Op: "SCMP_CMP_EQ" }] },
          { Names: ["clone"], Action: "SCMP_ACT_ERRNO", ErrnoRet: { case: "errnoret", value: 1 }, Args: [{ Index: 0n, Value: 2114060288n, ValueTwo: 2114060288n, Op: "SCMP_CMP_MASKED_EQ" }] },
        ],
      },
      RootfsPropagation: "rslave",
      MaskedPaths: ["/proc/kcore"],
      ReadonlyPaths: ["/proc/sys"],
    },
  });
}

describe("guest agent: OCI spec from the protocol", () => {
  it("converts every field of a full spec (golden)", async () => {
    await golden("full-spec.json", renderJson(specToOci(fullSpec())) + "\n");
  });

  it("leaves out what a minimal spec does not set", () => {
    const minimal = create(SpecSchema, { Process: { Args: ["true"] }, Root: { Path: "/r" } });
    assert.deepEqual(specToOci(minimal), {
      ociVersion: "1.0.2",
      mounts: [],
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: ["true"], cwd: "/" },
      root: { path: "/r" },
    });
  });

  it("writes 64-bit values exactly, as JSON numbers", () => {
    const text = renderJson(specToOci(fullSpec()));
    assert.match(text, /"hard": 18446744073709551615/);
    assert.match(text, /"value": 4294967295/);
    assert.doesNotMatch(text, /"username"/, "Username is for Windows");
    const parsed = JSON.parse(text) as { process: { args: string[] } };
    assert.deepEqual(parsed.process.args, ["/bin/sh", "-c", "echo \"quoted\" \\ and \n newline"], "strings survive escaping");
  });

  it("converts a process for crun exec and resources for crun update", () => {
    const p = processToOci(create(ProcessSchema, { Args: ["ls"], Env: ["A=1"], Cwd: "/tmp", User: { UID: 5, GID: 6 } }));
    assert.deepEqual(p, { terminal: false, user: { uid: 5, gid: 6 }, args: ["ls"], env: ["A=1"], cwd: "/tmp" });
    const r = resourcesToOci(create(LinuxResourcesSchema, { Memory: { Limit: -1n }, CPU: { Quota: -1n, Period: 100000n }, Pids: { Limit: 0n } }));
    assert.deepEqual(r, { memory: { limit: -1n }, cpu: { quota: -1n, period: 100000n } });
    assert.equal(renderJson(r), '{\n  "memory": {\n    "limit": -1\n  },\n  "cpu": {\n    "quota": -1,\n    "period": 100000\n  }\n}');
  });

  it("renders JSON like JSON.stringify for plain values, and refuses what JSON cannot hold", () => {
    const value = { a: [1, "two", true, null, { b: [] }], c: {}, d: undefined, "e\"f": "\u0001" };
    assert.deepEqual(JSON.parse(renderJson(value)), JSON.parse(JSON.stringify(value)));
    assert.throws(() => renderJson({ x: Number.NaN }), TypeError);
    assert.throws(() => renderJson({ x: () => 1 }), TypeError);
  });
});
