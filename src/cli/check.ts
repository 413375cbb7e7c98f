/**
 * `vmpod check`: whether this host can run VM pods with this configuration,
 * and why not. Every check gives one line: ok, info (a fact that needs no
 * action), warn (works, but worse or later: TCG instead of KVM, no CNI
 * configuration yet) or FAIL (a pod would not start). The host is seen
 * through a HostProbe, so that tests can describe a bad host.
 */
import { messageOf } from "../common/errors.js";
import { findFileProblems } from "../config/host-files.js";
import type { Loaded } from "../config/load.js";
import type { HostProbe } from "./host-probe.js";

export type Verdict = "ok" | "info" | "warn" | "fail";

export interface CheckLine {
  readonly verdict: Verdict;
  /** What was checked ("qemu", "acceleration", "cni"). */
  readonly what: string;
  readonly detail: string;
}

const MIB = 1024 * 1024;

/**
 * The least free space asked for. State root: pod records, sockets, the
 * guests' console logs and container logs' offsets, a few MiB a pod. Image
 * root: every layer is kept twice (its blob and unpacked), and a small
 * image's layers are tens of MiB.
 */
export const MIN_FREE_BYTES = { stateRoot: 64 * MIB, imageRoot: 1024 * MIB } as const;

/** Controllers the oci handlers need on the host: limits and usage of memory, CPU and tasks. */
const CGROUP_CONTROLLERS = { v1: ["cpu", "cpuacct", "memory", "pids", "devices"], v2: ["cpu", "memory", "pids"] } as const;

export async function runChecks(loaded: Loaded, probe: HostProbe, minFree = MIN_FREE_BYTES): Promise<CheckLine[]> {
  const { config } = loaded;
  const lines: CheckLine[] = [];
  const add = (verdict: Verdict, what: string, detail: string) => lines.push({ verdict, what, detail });
  const handlers = Object.entries(config.runtime.handlers);
  const vmHandlers = handlers.filter(([, h]) => h.type === "vm").map(([name]) => name);
  const ociHandlers = handlers.filter(([, h]) => h.type === "oci").map(([name]) => name);

  add("info", "configuration", `${loaded.source}; handlers: ${handlers.map(([n, h]) => `${n} (${h.type})`).join(", ")}`);
  for (const w of loaded.warnings) add("warn", "configuration", w);
  const host = await probe.host();
  if (!host.isRoot) add("fail", "privileges", "vmpod runs as root (network namespaces, mounts, taps, cgroups); this process is not root");

  // Files the configuration names, each problem with its key, file and line.
  const fileProblems = await findFileProblems(loaded, probe.files);
  for (const p of fileProblems) add("fail", "file", p.message);
  const broken = new Set(fileProblems.map((p) => p.requirement.key));

  if (vmHandlers.length > 0) {
    const { hypervisor } = config;
    if (!broken.has("hypervisor.qemu.path")) {
      await probe.version(hypervisor.path).then(
        (v) => add("ok", "qemu", `${hypervisor.path}: ${v}`),
        (err: unknown) => add("fail", "qemu", `${hypervisor.path} does not run: ${messageOf(err)}`),
      );
    }
    for (const [key, what, path] of [
      ["hypervisor.qemu.kernel", "guest kernel", hypervisor.kernel],
      ["hypervisor.qemu.initrd", "guest initrd", hypervisor.initrd],
      ["hypervisor.qemu.image", "guest root image", hypervisor.image],
    ] as const) {
      if (!broken.has(key)) add("ok", what, `${path} (${mib((await probe.size(path)) ?? 0)})`);
    }
    await checkAcceleration(loaded, probe, add);
    const vsock = await probe.device("/dev/vhost-vsock");
    add("info", "vhost-vsock", `${vsock.present ? "present" : "absent"}; not needed: the agent is reached over virtio-serial`);
    const tun = await probe.device("/dev/net/tun");
    const tunNeeded = config.network.interNetworkingModel === "tcfilter";
    if (tun.usable) add("ok", "/dev/net/tun", "opens read-write (taps for pod networks)");
    else add(tunNeeded ? "fail" : "info", "/dev/net/tun", `${tun.present ? "cannot be opened read-write" : "absent"}${tunNeeded ? ': internetworking_model = "tcfilter" gives each VM a tap' : ""}`);
    if (hypervisor.sharedFs === "virtio-fs" && !broken.has("hypervisor.qemu.virtio_fs_daemon")) {
      await probe.version(hypervisor.virtioFsDaemon).then(
        (v) => add("ok", "virtiofsd", `${hypervisor.virtioFsDaemon}: ${v}`),
        (err: unknown) => add("fail", "virtiofsd", `${hypervisor.virtioFsDaemon} does not run: ${messageOf(err)}`),
      );
    } else if (hypervisor.sharedFs === "none") {
      add("info", "virtiofsd", 'not used (shared_fs = "none")');
    }
    if (config.hypervisor.defaultVcpus > host.cpus) {
      add("warn", "vcpus", `hypervisor.qemu.default_vcpus = ${config.hypervisor.defaultVcpus} is more than this host's ${host.cpus} CPUs`);
    }
  }
  for (const name of ociHandlers) {
    const handler = config.runtime.handlers[name];
    if (handler?.type !== "oci" || broken.has(`runtime.handlers.${name}.runtime_path`)) continue;
    await probe.version(handler.runtimePath).then(
      (v) => add("ok", `handler ${name}`, `${handler.runtimePath}: ${v}`),
      (err: unknown) => add("fail", `handler ${name}`, `${handler.runtimePath} does not run: ${messageOf(err)}`),
    );
  }

  await checkCni(loaded, probe, add);
  await checkCgroups(ociHandlers, probe, add);
  for (const [what, key, path, least] of [
    ["state root", "runtime.state_root", config.runtime.stateRoot, minFree.stateRoot],
    ["image root", "image.root", config.image.root, minFree.imageRoot],
  ] as const) {
    try {
      const free = await probe.freeSpace(path);
      const where = free.at === path ? path : `${path} (on ${free.at})`;
      if (free.bytes < least) add("fail", what, `${key}: ${where} has ${mib(free.bytes)} free, less than the ${mib(least)} asked for`);
      else add("ok", what, `${where}: ${mib(free.bytes)} free`);
    } catch (err) {
      add("fail", what, `${key}: cannot tell the free space of ${path}: ${messageOf(err)}`);
    }
  }
  return lines;
}

async function checkAcceleration(loaded: Loaded, probe: HostProbe, add: (v: Verdict, what: string, detail: string) => void): Promise<void> {
  const requested = loaded.config.hypervisor.accel;
  const kvm = await probe.kvm();
  add(
    "info",
    "/dev/kvm",
    !kvm.present ? "absent" : !kvm.usable ? "present, but does not open read-write" : kvm.pvm ? "present, provided by kvm_pvm (nested virtualization by shadow paging)" : "present and usable",
  );
  try {
    const choice = await probe.accel(requested);
    if (choice.accel === "kvm") add("ok", "acceleration", `kvm: ${choice.reason}`);
    else if (requested === "tcg") add("info", "acceleration", `tcg: ${choice.reason}`);
    else add("warn", "acceleration", `TCG will be used, not KVM; VMs run, far slower. Reason: ${choice.reason}`);
  } catch (err) {
    add("fail", "acceleration", `hypervisor.qemu.accel = "${requested}": ${messageOf(err)}`);
  }
}

async function checkCni(loaded: Loaded, probe: HostProbe, add: (v: Verdict, what: string, detail: string) => void): Promise<void> {
  const { confDir, binDirs } = loaded.config.network;
  const cni = await probe.cni(confDir, binDirs);
  const bins = `${cni.pluginBinaries} plugin binaries in ${binDirs.join(", ")}`;
  if (cni.conflist === undefined) {
    add("warn", "cni", `no network configuration in ${confDir} (${bins}): pods wait for one (NetworkReady false) until a network plugin writes it`);
  } else if (cni.error !== undefined) {
    add("fail", "cni", cni.error);
  } else if (cni.missingPlugins.length > 0) {
    add("fail", "cni", `${cni.conflist} names plugins found in none of ${binDirs.join(", ")}: ${cni.missingPlugins.join(", ")}`);
  } else {
    add("ok", "cni", `network ${cni.networkName ?? "?"} from ${cni.conflist}; plugins ${cni.plugins.join(", ")} found`);
  }
  if (cni.pluginBinaries === 0) add("warn", "cni", `no plugin binaries in ${binDirs.join(", ")} (Debian: containernetworking-plugins)`);
}

async function checkCgroups(ociHandlers: readonly string[], probe: HostProbe, add: (v: Verdict, what: string, detail: string) => void): Promise<void> {
  const cg = await probe.cgroups();
  const needed = cg.version === "v2" ? CGROUP_CONTROLLERS.v2 : CGROUP_CONTROLLERS.v1;
  const missing = needed.filter((c) => !cg.controllers.includes(c));
  const facts = `cgroup ${cg.version}, controllers: ${cg.controllers.join(" ") || "none"}`;
  if (missing.length === 0) add(ociHandlers.length > 0 ? "ok" : "info", "cgroups", facts);
  else if (ociHandlers.length > 0) add("fail", "cgroups", `${facts}; missing ${missing.join(", ")}, needed by the oci handlers ${ociHandlers.join(", ")}`);
  else add("info", "cgroups", `${facts}; missing ${missing.join(", ")} (only oci handlers need them)`);
}

/** The report, and the exit status: 0 when nothing failed (warnings allowed), 1 otherwise. */
export function renderCheck(lines: readonly CheckLine[]): { text: string; exitCode: number } {
  const label: Record<Verdict, string> = { ok: "ok  ", info: "info", warn: "WARN", fail: "FAIL" };
  const failures = lines.filter((l) => l.verdict === "fail").length;
  const warnings = lines.filter((l) => l.verdict === "warn").length;
  const body = lines.map((l) => `${label[l.verdict]}  ${l.what}: ${l.detail}`);
  const summary =
    failures === 0
      ? `this host can run VM pods${warnings > 0 ? ` (${warnings} warning${warnings > 1 ? "s" : ""})` : ""}`
      : `this host cannot run VM pods: ${failures} problem${failures > 1 ? "s" : ""}`;
  return { text: [...body, summary].join("\n") + "\n", exitCode: failures === 0 ? 0 : 1 };
}

function mib(bytes: number): string {
  return bytes >= 1024 * MIB ? `${(bytes / (1024 * MIB)).toFixed(1)} GiB` : `${(bytes / MIB).toFixed(1)} MiB`;
}
