/**
 * Real pod VMs for integration tests: the guest image built (or reused), the
 * engine configured as the daemon would be, state under a short temporary
 * root, and the console logs of a failed test's VMs kept in .test-artifacts/.
 */
import { copyFile, mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BASE_KERNEL_PARAMS, ensureGuestImage, type GuestImage } from "../../guest/build/index.js";
import { createLogger, type Logger, silentLogger } from "../../src/common/log.js";
import { unmountTree } from "../../src/common/mount.js";
import { killProcessesMentioning } from "../../src/common/processes.js";
import { defaultConfig } from "../../src/config/defaults.js";
import type { Config } from "../../src/config/types.js";
import { chooseAccel, hostTscKhz } from "../../src/hypervisor/accel.js";
import { QemuHypervisor } from "../../src/hypervisor/qemu.js";
import { VmEngine, type HostFacts } from "../../src/sandbox/engine.js";
import type { PodVm } from "../../src/sandbox/pod-vm.js";
import { sharedTemplatesDir } from "./templates-dir.js";

export interface VmFixture {
  readonly root: string;
  readonly image: GuestImage;
  readonly config: Config;
  readonly host: HostFacts;
  readonly engine: VmEngine;
  readonly logger: Logger;
  /** Boots a VM that `release` (or the fixture's teardown) stops. */
  boot(id: string, overrides?: { hostname?: string; extraKernelParams?: readonly string[] }): Promise<PodVm>;
  /** Copies the console logs of the live VMs into .test-artifacts/, named after `title`. */
  keepConsoles(title: string): Promise<void>;
  /** Stops the VMs this fixture booted, keeping their console logs first if `failed`. */
  release(failed: boolean, title: string): Promise<void>;
  dispose(): Promise<void>;
}

let imagePromise: Promise<GuestImage> | undefined;

/** The guest image, built once per test run. */
export function guestImage(): Promise<GuestImage> {
  imagePromise ??= ensureGuestImage({ log: (m) => process.stderr.write(`      guest image: ${m}\n`) });
  return imagePromise;
}

export async function vmFixture(options: { configure?: (config: Config) => Config } = {}): Promise<VmFixture> {
  const image = await guestImage();
  const root = await mkdtemp(join(tmpdir(), "vmpod-"));
  const base = defaultConfig(image.dir);
  const config0: Config = { ...base, runtime: { ...base.runtime, stateRoot: root }, factory: { ...base.factory, templatePath: sharedTemplatesDir() } };
  const config = options.configure ? options.configure(config0) : config0;
  const accel = await chooseAccel(config.hypervisor.accel);
  const tscKhz = await hostTscKhz();
  const host: HostFacts = { accel: accel.accel, ...(tscKhz === undefined ? {} : { tscKhz }), guestKernelParams: BASE_KERNEL_PARAMS };
  const logger = process.env.VMPOD_TEST_LOG ? createLogger({ level: "debug" }) : silentLogger;
  const engine = new VmEngine(config, host, () => new QemuHypervisor(), logger);
  const live: PodVm[] = [];
  const fixture: VmFixture = {
    root,
    image,
    config,
    host,
    engine,
    logger,
    async boot(id, overrides = {}) {
      const vm = await engine.boot({ id, hostname: overrides.hostname ?? id, ...(overrides.extraKernelParams ? { extraKernelParams: overrides.extraKernelParams } : {}) });
      live.push(vm);
      return vm;
    },
    async keepConsoles(title) {
      const dir = join(process.cwd(), ".test-artifacts");
      await mkdir(dir, { recursive: true });
      for (const vm of live) {
        const name = `${title.replace(/[^A-Za-z0-9]+/g, "-").slice(0, 60)}-${vm.id}.console.log`;
        await copyFile(join(vm.paths.vmDir, "console.log"), join(dir, name)).catch(() => {});
      }
    },
    async release(failed, title) {
      if (failed) await fixture.keepConsoles(title);
      const vms = live.splice(0);
      await Promise.all(vms.map((vm) => vm.stop()));
    },
    async dispose() {
      await fixture.release(false, "");
      // A VM a failed test booted through the engine itself (not `boot`) is not the fixture's to stop: end it anyway.
      const killed = await killProcessesMentioning(root);
      if (killed.length > 0) process.stderr.write(`      vm fixture: killed ${killed.length} process(es) left under ${root}\n`);
      await unmountTree(root);
      await rm(root, { recursive: true, force: true });
    },
  };
  return fixture;
}
