/**
 * `vmpod env`: the facts of what vmpod would use on this host with this
 * configuration, collected here (through a HostProbe) and rendered as TOML
 * by env-render.ts: vmpod's version and configuration file, QEMU and the
 * acceleration it would get, the guest's kernel, initrd and root image with
 * their digests and guest build, the agent, the shared filesystem, CNI, VM
 * templates (in use or why not, the default shape's key, what is built),
 * and the host (kernel, architecture, cgroups, CPU).
 */
import { dirname, join } from "node:path";
import { AGENT_VERSION } from "../../guest/agent/services.js";
import type { GuestManifest } from "../../guest/build/build.js";
import { BASE_KERNEL_PARAMS } from "../../guest/build/kernel-params.js";
import { messageOf } from "../common/errors.js";
import type { ConfigChoice } from "../config/discovery.js";
import type { Loaded } from "../config/load.js";
import type { HandlerConfig } from "../config/types.js";
import type { TemplateKey } from "../sandbox/template-key.js";
import { factoryFacts, type FactoryFacts } from "./factory.js";
import type { CgroupFacts, CniFacts, HostFacts, HostProbe, KvmFacts } from "./host-probe.js";

export interface AssetFacts {
  readonly path: string;
  readonly present: boolean;
  readonly sizeBytes?: number;
  readonly sha256?: string;
}

/** What the guest build wrote beside the image (manifest.json), when the assets are one build's. */
export interface GuestBuildFacts {
  readonly hash: string;
  readonly kernelVersion: string;
  readonly nodeVersion: string;
  readonly crunVersion: string;
  readonly builtAt: string;
}

export interface EnvFacts {
  readonly vmpodVersion: string;
  readonly config: { readonly path?: string; readonly origin: string; readonly warnings: readonly string[] };
  readonly runtime: {
    readonly stateRoot: string;
    readonly logLevel: string;
    readonly debug: boolean;
    readonly defaultHandler: string;
    readonly handlers: Readonly<Record<string, HandlerConfig & { readonly present?: boolean }>>;
    readonly criSocket: string;
    readonly streamAddress: string;
  };
  readonly hypervisor: {
    readonly path: string;
    /** `qemu --version`'s first line, or why it could not be had. */
    readonly version: string;
    readonly machineType: string;
    readonly accelRequested: string;
    /** "kvm", "tcg", or "none" when the requested one cannot be had. */
    readonly accel: string;
    readonly accelReason: string;
    readonly kvm: KvmFacts;
    readonly defaultVcpus: number;
    readonly defaultMemoryMiB: number;
    readonly baseKernelParams: readonly string[];
    readonly kernelParams: readonly string[];
    readonly sharedFs: string;
    readonly virtioFsDaemon: string;
    readonly virtioFsDaemonVersion?: string;
    readonly blockDeviceDriver: string;
    readonly disableBlockDeviceUse: boolean;
  };
  readonly kernel: AssetFacts;
  readonly initrd: AssetFacts;
  readonly image: AssetFacts;
  readonly guestBuild?: GuestBuildFacts;
  readonly agent: { readonly version: string; readonly transport: string; readonly dialTimeoutSeconds: number; readonly callTimeoutSeconds: number };
  readonly network: {
    readonly confDir: string;
    readonly binDirs: readonly string[];
    readonly cacheDir: string;
    readonly interNetworkingModel: string;
    readonly cni: CniFacts;
  };
  readonly imageStore: { readonly root: string; readonly platform: string; readonly sandboxImage: string };
  readonly metrics: { readonly enable: boolean; readonly address: string };
  readonly factory: FactoryFacts;
  readonly host: HostFacts & { readonly cgroups: CgroupFacts };
}

export interface EnvInputs {
  readonly loaded: Loaded;
  readonly choice: ConfigChoice;
  readonly vmpodVersion: string;
  /** Digest the kernel, initrd and root image (reads ~170 MB with the default guest). */
  readonly digests?: boolean;
  /** The key of the default VM shape's template (it needs the host's acceleration); without it none is shown. */
  readonly templateKey?: () => Promise<TemplateKey>;
}

export async function collectEnv(inputs: EnvInputs, probe: HostProbe): Promise<EnvFacts> {
  const { config } = inputs.loaded;
  const hv = config.hypervisor;
  const version = (path: string) => probe.version(path).catch((err: unknown) => `unavailable: ${messageOf(err)}`);
  const asset = async (path: string): Promise<AssetFacts> => {
    const size = await probe.size(path);
    if (size === undefined) return { path, present: false };
    return { path, present: true, sizeBytes: size, ...(inputs.digests === false ? {} : { sha256: await probe.sha256(path) }) };
  };
  let accel: { accel: string; reason: string };
  try {
    accel = await probe.accel(hv.accel);
  } catch (err) {
    accel = { accel: "none", reason: messageOf(err) };
  }
  const handlers: Record<string, HandlerConfig & { present?: boolean }> = {};
  for (const [name, h] of Object.entries(config.runtime.handlers)) {
    handlers[name] = h.type === "oci" ? { ...h, present: (await probe.files.problemWith(h.runtimePath, "executable")) === undefined } : h;
  }
  const virtioFsDaemonPresent = hv.sharedFs === "virtio-fs" && (await probe.files.problemWith(hv.virtioFsDaemon, "executable")) === undefined;
  const [qemuVersion, kernel, initrd, image, guestBuild, cni, host, cgroups, kvm, factory] = await Promise.all([
    version(hv.path),
    asset(hv.kernel),
    asset(hv.initrd),
    asset(hv.image),
    guestBuildOf(probe, hv.kernel, hv.initrd, hv.image),
    probe.cni(config.network.confDir, config.network.binDirs),
    probe.host(),
    probe.cgroups(),
    probe.kvm(),
    factoryFacts(config, inputs.templateKey),
  ]);
  const inForce = inputs.choice.inForce;
  return {
    vmpodVersion: inputs.vmpodVersion,
    config: { ...(inForce?.path === undefined ? {} : { path: inForce.path }), origin: inForce?.origin ?? "built-in defaults", warnings: inputs.loaded.warnings },
    runtime: {
      stateRoot: config.runtime.stateRoot,
      logLevel: config.runtime.logLevel,
      debug: config.runtime.enableDebug,
      defaultHandler: config.runtime.defaultHandler,
      handlers,
      criSocket: config.cri.socket,
      streamAddress: config.cri.streamAddress,
    },
    hypervisor: {
      path: hv.path,
      version: qemuVersion,
      machineType: hv.machineType,
      accelRequested: hv.accel,
      accel: accel.accel,
      accelReason: accel.reason,
      kvm,
      defaultVcpus: hv.defaultVcpus,
      defaultMemoryMiB: hv.defaultMemory,
      baseKernelParams: BASE_KERNEL_PARAMS,
      kernelParams: hv.kernelParams,
      sharedFs: hv.sharedFs,
      virtioFsDaemon: hv.virtioFsDaemon,
      ...(virtioFsDaemonPresent ? { virtioFsDaemonVersion: await version(hv.virtioFsDaemon) } : {}),
      blockDeviceDriver: hv.blockDeviceDriver,
      disableBlockDeviceUse: hv.disableBlockDeviceUse,
    },
    kernel,
    initrd,
    image,
    ...(guestBuild === undefined ? {} : { guestBuild }),
    agent: { version: AGENT_VERSION, transport: "virtio-serial", dialTimeoutSeconds: config.agent.dialTimeoutMs / 1000, callTimeoutSeconds: config.agent.callTimeoutMs / 1000 },
    network: {
      confDir: config.network.confDir,
      binDirs: config.network.binDirs,
      cacheDir: config.network.cacheDir,
      interNetworkingModel: config.network.interNetworkingModel,
      cni,
    },
    imageStore: { root: config.image.root, platform: config.image.platform, sandboxImage: config.image.sandboxImage },
    metrics: config.metrics,
    factory,
    host: { ...host, cgroups },
  };
}

/** The guest build's manifest, when the kernel, initrd and image lie together beside one. */
async function guestBuildOf(probe: HostProbe, kernel: string, initrd: string, image: string): Promise<GuestBuildFacts | undefined> {
  const dir = dirname(kernel);
  if (dirname(initrd) !== dir || dirname(image) !== dir) return undefined;
  const text = await probe.readText(join(dir, "manifest.json"));
  if (text === undefined) return undefined;
  try {
    const m = JSON.parse(text) as Partial<GuestManifest>;
    if (typeof m.hash !== "string") return undefined;
    return {
      hash: m.hash,
      kernelVersion: String(m.kernelVersion ?? ""),
      nodeVersion: String(m.nodeVersion ?? ""),
      crunVersion: String(m.crunVersion ?? ""),
      builtAt: String(m.builtAt ?? ""),
    };
  } catch {
    return undefined;
  }
}
