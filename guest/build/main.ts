/**
 * Builds (or reuses) the guest image and prints its paths.
 *
 *   npx tsx guest/build/main.ts [--agent FILE] [--out DIR] [--root-compression none|lz4|lz4hc]
 *                               [--initramfs-compression none|gzip] [--json]
 */
import { parseArgs } from "node:util";
import { invalidArgument, kindOf, messageOf } from "../../src/common/errors.js";
import { ensureGuestImage, type GuestImageOptions } from "./ensure.js";
import type { InitramfsCompression } from "./initramfs.js";
import { BASE_KERNEL_PARAMS } from "./kernel-params.js";
import type { ErofsCompression } from "./rootfs.js";

const ROOT_COMPRESSIONS: readonly ErofsCompression[] = ["none", "lz4", "lz4hc"];
const INITRAMFS_COMPRESSIONS: readonly InitramfsCompression[] = ["none", "gzip"];

function pick<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T | undefined {
  if (value === undefined) return undefined;
  if (!(allowed as readonly string[]).includes(value)) throw invalidArgument(`--${name} must be one of ${allowed.join(", ")}`);
  return value as T;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      agent: { type: "string" },
      out: { type: "string" },
      "root-compression": { type: "string" },
      "initramfs-compression": { type: "string" },
      json: { type: "boolean", default: false },
    },
    strict: true,
  });
  const rootCompression = pick("root-compression", values["root-compression"], ROOT_COMPRESSIONS);
  const initramfsCompression = pick("initramfs-compression", values["initramfs-compression"], INITRAMFS_COMPRESSIONS);
  const options: GuestImageOptions = {
    log: (message) => process.stderr.write(`${message}\n`),
    ...(values.agent === undefined ? {} : { agentEntry: values.agent }),
    ...(values.out === undefined ? {} : { outDir: values.out }),
    ...(rootCompression === undefined ? {} : { rootCompression }),
    ...(initramfsCompression === undefined ? {} : { initramfsCompression }),
  };
  const image = await ensureGuestImage(options);
  if (values.json) {
    process.stdout.write(JSON.stringify({ ...image, kernelParams: BASE_KERNEL_PARAMS }, null, 2) + "\n");
    return;
  }
  const m = image.manifest;
  process.stdout.write(
    [
      `hash:    ${image.hash}${image.reused ? " (reused)" : " (built)"}`,
      `kernel:  ${image.kernel} (${m.kernelVersion}, bzImage)`,
      `vmlinux: ${image.vmlinux ?? "(none: the kernel cannot be unpacked for a PVH boot)"}`,
      `initrd:  ${image.initrd} (${m.sizes.initrd} bytes, ${m.initramfsCompression})`,
      `root:    ${image.rootImage} (${m.sizes.root} bytes, erofs ${m.rootCompression})`,
      `node ${m.nodeVersion}, crun ${m.crunVersion}, koffi ${m.koffiVersion}, mkfs.erofs ${m.mkfsErofsVersion}`,
      `params:  ${BASE_KERNEL_PARAMS.join(" ")}`,
      "",
    ].join("\n"),
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`guest build failed (${kindOf(err) ?? "Internal"}): ${messageOf(err)}\n`);
  process.exitCode = 1;
});
