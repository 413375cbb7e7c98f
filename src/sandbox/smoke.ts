/**
 * The engine's smoke path: boot a pod VM, run a container from a busybox root
 * filesystem made on the host, exec into it, and tear everything down,
 * reporting what happened and how long each phase took.
 */
import { execFile } from "node:child_process";
import { copyFile, mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { OciProcess } from "../common/oci-spec.js";
import type { VmEngine } from "./engine.js";
import type { BootTimings } from "./pod-vm.js";
import { readAll } from "./process-io.js";

export interface SmokeReport {
  readonly pod: string;
  readonly boot: BootTimings;
  readonly containerOutput: string;
  readonly containerExit: number;
  readonly execOutput: string;
  readonly execExit: number;
  readonly containerRunMs: number;
  readonly totalMs: number;
}

/** A minimal root filesystem: busybox-static and its applets, /etc/passwd and /etc/group. */
export async function makeBusyboxRootfs(dir: string, busybox = "/bin/busybox"): Promise<string> {
  const bin = join(dir, "bin");
  await mkdir(bin, { recursive: true });
  for (const d of ["proc", "sys", "dev", "etc", "tmp", "root", "run"]) await mkdir(join(dir, d), { recursive: true });
  await copyFile(busybox, join(bin, "busybox"));
  const { stdout } = await promisify(execFile)(busybox, ["--list"], { encoding: "utf8" });
  const applets = stdout.split("\n").filter((a) => a !== "" && a !== "busybox");
  await Promise.all(applets.map((a) => symlink("busybox", join(bin, a))));
  await writeFile(join(dir, "etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n");
  await writeFile(join(dir, "etc/group"), "root:x:0:\nnogroup:x:65534:\n");
  return dir;
}

/** Runs the smoke path; `signal` (SIGINT, SIGTERM) stops the VM and ends it early. */
export async function runSmoke(engine: VmEngine, options: { id: string; scratchDir: string; signal?: AbortSignal }): Promise<SmokeReport> {
  const start = performance.now();
  const rootfs = await makeBusyboxRootfs(join(options.scratchDir, "rootfs"));
  const vm = await engine.boot({ id: options.id, hostname: options.id, ...(options.signal ? { signal: options.signal } : {}) });
  const interrupt = () => void vm.stop().catch(() => {});
  options.signal?.addEventListener("abort", interrupt, { once: true });
  try {
    const process = (args: string[]): OciProcess => ({ args, env: ["PATH=/bin"], cwd: "/", user: { uid: 0, gid: 0 } });
    const t = performance.now();
    await vm.createContainer("smoke", { kind: "dir", path: rootfs }, {
      ociVersion: "1.1.0",
      process: process(["sh", "-c", "echo hello from $(hostname) in a pod VM; sleep 1000"]),
      mounts: [{ destination: "/proc", type: "proc", source: "proc" }],
      linux: { namespaces: [{ type: "pid" }, { type: "mount" }, { type: "ipc" }] },
    });
    const io = vm.io("smoke", "");
    await vm.startContainer("smoke");
    const containerRunMs = performance.now() - t;
    const exec = await vm.exec("smoke", "exec-1", process(["sh", "-c", "echo exec sees $(ls /bin | wc -l) applets"]));
    const [execOutput, execExit] = await Promise.all([readAll(exec.stdout), exec.wait()]);
    // The container's first process is PID 1 of its namespace: SIGTERM, unhandled, is ignored.
    await vm.signal("smoke", "", 9);
    const [containerOutput, containerExit] = await Promise.all([readAll(io.stdout), io.wait()]);
    await vm.removeContainer("smoke");
    return {
      pod: options.id,
      boot: vm.timings,
      containerOutput: containerOutput.trim(),
      containerExit,
      execOutput: execOutput.trim(),
      execExit,
      containerRunMs: Math.round(containerRunMs),
      totalMs: Math.round(performance.now() - start),
    };
  } finally {
    options.signal?.removeEventListener("abort", interrupt);
    await vm.stop();
  }
}
