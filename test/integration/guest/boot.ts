/**
 * Boots a guest image under QEMU for the guest tests (and for measuring): a
 * microvm (or q35) with the root image on virtio-blk and, optionally, the
 * agent's virtio-serial port on a unix socket. The console is collected; QEMU
 * is killed if it outlives the timeout.
 */
import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import type { GuestImage } from "../../../guest/build/index.js";

export interface BootOptions {
  readonly params: readonly string[];
  readonly timeoutMs: number;
  readonly machine?: "microvm" | "q35";
  readonly cpu?: string;
  readonly memoryMiB?: number;
  /** Boot the uncompressed kernel by PVH (image.vmlinux) rather than the bzImage. */
  readonly pvh?: boolean;
  /** Unix socket path for the agent's port (QEMU listens; name agent.channel.0). */
  readonly agentSocket?: string;
  /** Called once QEMU is spawned (to connect to the agent socket, say). */
  readonly onSpawn?: (pid: number) => void;
}

export interface BootResult {
  readonly pid: number;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly console: string;
  readonly stderr: string;
  readonly wallMs: number;
  readonly timedOut: boolean;
}

type BootableImage = Pick<GuestImage, "kernel" | "vmlinux" | "initrd" | "rootImage">;

export function qemuArgs(image: BootableImage, options: BootOptions): string[] {
  const machine = options.machine ?? "microvm";
  if (options.pvh === true && image.vmlinux === undefined) throw new Error("the image has no vmlinux to boot by PVH");
  const kernel = options.pvh === true && image.vmlinux !== undefined ? image.vmlinux : image.kernel;
  const blk = machine === "microvm" ? "virtio-blk-device" : "virtio-blk-pci";
  const args = [
    "-M",
    machine === "microvm" ? "microvm,x-option-roms=off,isa-serial=on,rtc=on" : "q35",
    "-accel",
    "tcg,thread=multi",
    "-cpu",
    options.cpu ?? "max",
    "-m",
    String(options.memoryMiB ?? 256),
    "-smp",
    "1",
    "-nodefaults",
    "-no-user-config",
    "-nographic",
    "-no-reboot",
    "-kernel",
    kernel,
    "-initrd",
    image.initrd,
    "-append",
    options.params.join(" "),
    "-drive",
    `id=root,file=${image.rootImage},if=none,format=raw,readonly=on`,
    "-device",
    `${blk},drive=root`,
    "-serial",
    "stdio",
  ];
  if (options.agentSocket !== undefined) {
    args.push(
      "-device",
      machine === "microvm" ? "virtio-serial-device" : "virtio-serial-pci",
      "-chardev",
      `socket,id=agent,path=${options.agentSocket},server=on,wait=off`,
      "-device",
      "virtserialport,chardev=agent,name=agent.channel.0",
    );
  }
  return args;
}

/** Boots the image and resolves when QEMU has exited (by itself, or killed at the timeout). */
export function bootGuest(image: BootableImage, options: BootOptions): Promise<BootResult> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn("qemu-system-x86_64", qemuArgs(image, options), { stdio: ["ignore", "pipe", "pipe"] });
    let consoleText = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (consoleText += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, options.timeoutMs);
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on("spawn", () => {
      if (child.pid !== undefined) options.onSpawn?.(child.pid);
    });
    child.on("close", (exitCode, signal) => {
      clearTimeout(timer);
      resolve({
        pid: child.pid ?? -1,
        exitCode,
        signal,
        console: consoleText.replace(/\r\n/g, "\n"),
        stderr,
        wallMs: performance.now() - started,
        timedOut,
      });
    });
  });
}

/** Pids of live processes whose command line mentions `marker`. */
export async function processesMentioning(marker: string): Promise<number[]> {
  const pids: number[] = [];
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = await readFile(join("/proc", name, "cmdline"), "utf8");
      const stat = await readFile(join("/proc", name, "stat"), "utf8");
      if (cmdline.includes(marker) && !/\) Z /.test(stat)) pids.push(Number(name));
    } catch {
      // gone
    }
  }
  return pids;
}
