/**
 * The container spec's security rules: the user and groups (from the image's
 * passwd and group files), capabilities, privileged containers, masked and
 * read-only paths, seccomp (the default profile and localhost files) and
 * AppArmor per handler, and what is refused.
 */
import assert from "node:assert/strict";
import { buildContainerSpec } from "../../../src/sandbox/container-spec.js";
import { ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS } from "../../../src/sandbox/container-spec-security.js";
import { resolveUser } from "../../../src/sandbox/container-spec-user.js";
import { runtimeDefaultSeccomp } from "../../../src/sandbox/seccomp-default.js";
import type { ContainerSecurity } from "../../../src/sandbox/types.js";
import { container, GROUP, hostInput, image, input, PASSWD, pod } from "./container-spec-fixtures.js";

const invalid = (pattern: RegExp) => (err: Error & { kind?: string }) => {
  assert.equal(err.kind, "InvalidArgument", err.message);
  assert.match(err.message, pattern);
  return true;
};

const withSecurity = (sec: Partial<ContainerSecurity>, over: Parameters<typeof input>[0] = {}) => input({ container: container({}, sec), ...over });

describe("container spec security", () => {
  describe("user", () => {
    const files = { passwd: PASSWD, group: GROUP };
    it("is root with no user anywhere", () => {
      assert.deepEqual(resolveUser({ supplementalGroups: [] }), { uid: 0, gid: 0, additionalGids: [0] });
    });
    it("takes runAsUser's primary group and group memberships from the image", () => {
      assert.deepEqual(resolveUser({ runAsUser: 1000, supplementalGroups: [], ...files }), { uid: 1000, gid: 1001, username: "app", additionalGids: [1001, 10, 29] });
    });
    it("uses gid 0 for a uid the image does not know", () => {
      assert.deepEqual(resolveUser({ runAsUser: 4242, supplementalGroups: [5], ...files }), { uid: 4242, gid: 0, additionalGids: [0, 5] });
    });
    it("lets runAsGroup replace the primary group, and appends supplemental groups once", () => {
      assert.deepEqual(resolveUser({ runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [10, 4000], ...files }).additionalGids, [3000, 10, 29, 4000]);
    });
    it("resolves runAsUsername from the image's passwd, numeric or by name", () => {
      assert.deepEqual(resolveUser({ runAsUsername: "app", supplementalGroups: [], ...files }).uid, 1000);
      assert.deepEqual(resolveUser({ runAsUsername: "65534", supplementalGroups: [], ...files }).gid, 65534);
    });
    it("refuses a name the image does not know, or any name without a passwd file", () => {
      assert.throws(() => resolveUser({ runAsUsername: "ghost", supplementalGroups: [], ...files }), invalid(/"ghost" is not in the image's \/etc\/passwd/));
      assert.throws(() => resolveUser({ runAsUsername: "app", supplementalGroups: [] }), invalid(/the image has no \/etc\/passwd/));
    });
    it("reads the image's User in each form", () => {
      const u = (imageUser: string) => {
        const r = resolveUser({ imageUser, supplementalGroups: [], ...files });
        return [r.uid, r.gid];
      };
      assert.deepEqual(u("app"), [1000, 1001]);
      assert.deepEqual(u("1000"), [1000, 1001]);
      assert.deepEqual(u("app:wheel"), [1000, 10]);
      assert.deepEqual(u("1000:29"), [1000, 29]);
      assert.deepEqual(u("5000:5000"), [5000, 5000]);
      assert.deepEqual(u("nobody:"), [65534, 65534]);
      assert.throws(() => u("app:ghosts"), invalid(/group "ghosts" is not in its \/etc\/group/));
      assert.throws(() => u(":10"), invalid(/names no user/));
    });
    it("prefers runAsUser over the image's User", () => {
      assert.equal(resolveUser({ runAsUser: 0, imageUser: "app", supplementalGroups: [], ...files }).uid, 0);
    });
    it("reaches the spec with the pod's supplemental groups", async () => {
      const spec = await buildContainerSpec(
        input({ pod: pod({ supplementalGroups: [2000] }), container: container({}, { runAsUser: 1000, supplementalGroups: [3000] }), ...files }),
      );
      assert.deepEqual(spec.process?.user, { uid: 1000, gid: 1001, additionalGids: [1001, 10, 29, 2000, 3000] });
    });
    it("refuses an unresolvable image user at build time", async () => {
      await assert.rejects(buildContainerSpec(input({ image: image({ user: "daemon" }), ...files })), invalid(/"daemon"/));
    });
  });

  describe("capabilities", () => {
    const caps = async (sec: Partial<ContainerSecurity>) => (await buildContainerSpec(withSecurity(sec))).process?.capabilities;
    it("are the default set in bounding, effective and permitted, none inheritable or ambient", async () => {
      assert.deepEqual(await caps({}), { bounding: [...DEFAULT_CAPABILITIES], effective: [...DEFAULT_CAPABILITIES], permitted: [...DEFAULT_CAPABILITIES], inheritable: [], ambient: [] });
      assert.equal(DEFAULT_CAPABILITIES.length, 14);
    });
    it("add and drop by CRI name", async () => {
      const c = await caps({ capabilities: { add: ["NET_ADMIN", "cap_sys_time"], drop: ["KILL", "MKNOD"], addAmbient: [] } });
      assert.ok(c?.bounding?.includes("CAP_NET_ADMIN") && c.bounding.includes("CAP_SYS_TIME"));
      assert.ok(!c?.bounding?.includes("CAP_KILL") && !c?.bounding?.includes("CAP_MKNOD"));
      assert.equal(c?.bounding?.length, 14);
    });
    it("drop ALL then add some keeps only those", async () => {
      const c = await caps({ capabilities: { add: ["NET_BIND_SERVICE"], drop: ["ALL"], addAmbient: [] } });
      assert.deepEqual(c?.bounding, ["CAP_NET_BIND_SERVICE"]);
    });
    it("add ALL gives every capability; a drop still applies", async () => {
      const c = await caps({ capabilities: { add: ["ALL"], drop: ["SYS_ADMIN"], addAmbient: [] } });
      assert.equal(c?.bounding?.length, ALL_CAPABILITIES.length - 1);
      assert.ok(!c?.bounding?.includes("CAP_SYS_ADMIN"));
    });
    it("puts ambient capabilities in every set", async () => {
      const c = await caps({ capabilities: { add: [], drop: ["ALL"], addAmbient: ["NET_BIND_SERVICE"] } });
      assert.deepEqual(c, { bounding: ["CAP_NET_BIND_SERVICE"], effective: ["CAP_NET_BIND_SERVICE"], permitted: ["CAP_NET_BIND_SERVICE"], inheritable: ["CAP_NET_BIND_SERVICE"], ambient: ["CAP_NET_BIND_SERVICE"] });
    });
    it("refuses an unknown capability", async () => {
      await assert.rejects(caps({ capabilities: { add: ["FLY"], drop: [], addAmbient: [] } }), invalid(/unknown capability "FLY"/));
    });
  });

  describe("privileged", () => {
    const priv = { privileged: true, seccomp: { type: "runtime-default" as const } };
    it("has every capability, no masked or read-only paths, writable /sys and cgroups, every device, no seccomp", async () => {
      const spec = await buildContainerSpec(withSecurity(priv, { pod: pod({ privileged: true }) }));
      assert.deepEqual(spec.process?.capabilities?.bounding, [...ALL_CAPABILITIES]);
      assert.deepEqual(spec.linux?.maskedPaths, []);
      assert.deepEqual(spec.linux?.readonlyPaths, []);
      assert.ok(!spec.mounts?.find((m) => m.destination === "/sys")?.options?.includes("ro"));
      assert.ok(!spec.mounts?.find((m) => m.destination === "/sys/fs/cgroup")?.options?.includes("ro"));
      assert.deepEqual(spec.linux?.resources?.devices, [{ allow: true, access: "rwm" }]);
      assert.equal(spec.linux?.seccomp, undefined);
    });
    it("is refused in a pod that is not privileged", async () => {
      await assert.rejects(buildContainerSpec(withSecurity(priv)), invalid(/privileged but its pod is not/));
    });
  });

  describe("masked and read-only paths", () => {
    it("are the runtime's defaults when the config gives none, the config's (even empty) otherwise", async () => {
      const d = await buildContainerSpec(input());
      assert.deepEqual(d.linux?.maskedPaths, [...DEFAULT_MASKED_PATHS]);
      assert.deepEqual(d.linux?.readonlyPaths, [...DEFAULT_READONLY_PATHS]);
      const c = await buildContainerSpec(withSecurity({ maskedPaths: ["/proc/x"], readonlyPaths: [] }));
      assert.deepEqual(c.linux?.maskedPaths, ["/proc/x"]);
      assert.deepEqual(c.linux?.readonlyPaths, []);
    });
  });

  it("sets no_new_privs as asked", async () => {
    assert.equal((await buildContainerSpec(withSecurity({ noNewPrivs: true }))).process?.noNewPrivileges, true);
    assert.equal((await buildContainerSpec(input())).process?.noNewPrivileges, false);
  });

  describe("seccomp", () => {
    it("is none when unconfined or unset", async () => {
      assert.equal((await buildContainerSpec(withSecurity({ seccomp: { type: "unconfined" } }))).linux?.seccomp, undefined);
      assert.equal((await buildContainerSpec(input())).linux?.seccomp, undefined);
    });
    it("runtime-default denies mount and module loading with EPERM, allows the rest", async () => {
      const s = (await buildContainerSpec(withSecurity({ seccomp: { type: "runtime-default" } }))).linux?.seccomp;
      assert.equal(s?.defaultAction, "SCMP_ACT_ALLOW");
      const rule = (name: string) => s?.syscalls?.find((r) => r.names.includes(name));
      assert.deepEqual(rule("mount"), { names: rule("mount")?.names, action: "SCMP_ACT_ERRNO", errnoRet: 1 });
      assert.equal(rule("init_module")?.errnoRet, 1);
      assert.equal(rule("clone3")?.errnoRet, 38);
      assert.equal(rule("read"), undefined);
      const clone = s?.syscalls?.filter((r) => r.names.includes("clone")) ?? [];
      assert.ok(clone.some((r) => r.args?.[0]?.op === "SCMP_CMP_MASKED_EQ" && r.args[0].value === 0x10000000 && r.args[0].valueTwo === 0x10000000));
    });
    it("runtime-default follows the pod's profile when the container has none", async () => {
      const spec = await buildContainerSpec(input({ pod: pod({ seccomp: { type: "runtime-default" } }) }));
      assert.equal(spec.linux?.seccomp?.defaultAction, "SCMP_ACT_ALLOW");
    });
    it("a capability lifts the rules it grants", () => {
      const without = runtimeDefaultSeccomp(new Set(DEFAULT_CAPABILITIES));
      const withAdmin = runtimeDefaultSeccomp(new Set([...DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_TIME"]));
      const names = (p: typeof without) => new Set(p.syscalls?.flatMap((r) => r.names));
      assert.ok(names(without).has("mount") && names(without).has("settimeofday") && names(without).has("clone"));
      assert.ok(!names(withAdmin).has("mount") && !names(withAdmin).has("settimeofday") && !names(withAdmin).has("clone"));
      assert.ok(names(withAdmin).has("reboot"));
    });
    const profile = JSON.stringify({
      defaultAction: "SCMP_ACT_ERRNO",
      archMap: [{ architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86", "SCMP_ARCH_X32"] }],
      syscalls: [
        { names: ["read", "write", "exit_group"], action: "SCMP_ACT_ALLOW" },
        { names: ["personality"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 0, op: "SCMP_CMP_EQ" }] },
        { names: ["mount"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN"] } },
        { names: ["chown"], action: "SCMP_ACT_ALLOW", excludes: { caps: ["CAP_CHOWN"] } },
        { name: "getpid", action: "SCMP_ACT_ERRNO", errnoRet: 38 },
      ],
    });
    const local = (text: string, over: Parameters<typeof input>[0] = {}) =>
      buildContainerSpec(withSecurity({ seccomp: { type: "localhost", localhostRef: "/var/lib/kubelet/seccomp/p.json" } }, { readProfile: async () => text, ...over }));
    it("reads a localhost profile, applying includes and excludes by capability", async () => {
      const s = (await local(profile)).linux?.seccomp;
      assert.equal(s?.defaultAction, "SCMP_ACT_ERRNO");
      if (process.arch === "x64") assert.deepEqual(s?.architectures, ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
      assert.deepEqual(s?.syscalls, [
        { names: ["read", "write", "exit_group"], action: "SCMP_ACT_ALLOW" },
        { names: ["personality"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 0, op: "SCMP_CMP_EQ" }] },
        { names: ["getpid"], action: "SCMP_ACT_ERRNO", errnoRet: 38 },
      ]);
    });
    it("names the profile's file; refuses a bad one clearly", async () => {
      let asked = "";
      await local(profile, { readProfile: async (p) => ((asked = p), profile) });
      assert.equal(asked, "/var/lib/kubelet/seccomp/p.json");
      await assert.rejects(local("{"), invalid(/p.json is not JSON/));
      await assert.rejects(local(JSON.stringify({ defaultAction: "SCMP_ACT_MAYBE" })), invalid(/defaultAction "SCMP_ACT_MAYBE"/));
      await assert.rejects(local(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", listenerPath: "/run/l.sock" })), invalid(/listener/));
      await assert.rejects(
        local(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls: [{ names: ["x"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 1, op: "LIKE" }] }] })),
        invalid(/unknown op "LIKE"/),
      );
      await assert.rejects(local("", { readProfile: () => Promise.reject(new Error("ENOENT")) }), invalid(/cannot read the seccomp profile/));
    });
    it("keeps defaultErrnoRet on the host, refuses it in a pod VM", async () => {
      const text = JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", defaultErrnoRet: 1 });
      await assert.rejects(local(text), invalid(/defaultErrnoRet/));
      const sec = { seccomp: { type: "localhost" as const, localhostRef: "localhost//p.json" } };
      const spec = await buildContainerSpec(hostInput({ container: container({}, sec), readProfile: async () => text }));
      assert.equal(spec.linux?.seccomp?.defaultErrnoRet, 1);
    });
  });

  describe("AppArmor", () => {
    const profile = (type: "runtime-default" | "unconfined" | "localhost") => ({ apparmor: type === "localhost" ? { type, localhostRef: "localhost/k8s-app" } : { type } });
    it("runtime-default and unconfined are no profile, in a pod VM and on the host", async () => {
      for (const t of ["runtime-default", "unconfined"] as const) {
        assert.equal((await buildContainerSpec(withSecurity(profile(t)))).process?.apparmorProfile, undefined);
        assert.equal((await buildContainerSpec(hostInput({ container: container({}, profile(t)) }))).process?.apparmorProfile, undefined);
      }
    });
    it("a localhost profile is refused in a pod VM", async () => {
      await assert.rejects(buildContainerSpec(withSecurity(profile("localhost"))), invalid(/pod VM's kernel has no AppArmor/));
    });
    it("a localhost profile applies on a host with AppArmor, and is refused without", async () => {
      const spec = await buildContainerSpec(hostInput({ container: container({}, profile("localhost")), hostAppArmor: true }));
      assert.equal(spec.process?.apparmorProfile, "k8s-app");
      await assert.rejects(buildContainerSpec(hostInput({ container: container({}, profile("localhost")) })), invalid(/AppArmor is not enabled/));
    });
  });
});
