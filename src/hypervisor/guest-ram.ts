/**
 * A restored VM's RAM: an anonymous shared-memory file (memfd) holding a
 * sparse copy of a template's memory, which QEMU maps (`share=on`, so
 * virtiofsd sees the guest's pages). Not a file under the state root: on a
 * tmpfs /run, whose size is a fraction of the host's RAM, guest writes
 * would meet SIGBUS once it filled, and on a disk they would be written
 * back to it. A memfd is bounded by memory alone, like the memfd of a cold
 * boot, and goes away with the last process holding it.
 *
 * QEMU opens it by the path of vmpod's own descriptor,
 * `/proc/<vmpod's pid>/fd/<fd>`; vmpod closes its descriptor once QEMU runs.
 */
import { closeSync } from "node:fs";
import koffi from "koffi";
import { VmpodError, wrap } from "../common/errors.js";
import { run } from "../common/exec.js";

const MFD_CLOEXEC = 0x1;

type Fn = ReturnType<koffi.IKoffiLib["func"]>;
let memfdCreate: Fn | undefined;

export class GuestRam {
  private open = true;

  private constructor(private readonly fd: number) {}

  /** What QEMU opens as the memory backend's `mem-path`. */
  get path(): string {
    return `/proc/${process.pid}/fd/${this.fd}`;
  }

  /** A memfd holding `source`, with holes where `source` has holes or zero pages. */
  static async copyOf(source: string, signal?: AbortSignal): Promise<GuestRam> {
    memfdCreate ??= koffi.load("libc.so.6").func("int memfd_create(const char *name, unsigned int flags)");
    const fd = memfdCreate("vmpod-guest-ram", MFD_CLOEXEC) as number;
    if (fd < 0) throw new VmpodError("ResourceExhausted", "memfd_create for the guest's RAM failed");
    const ram = new GuestRam(fd);
    try {
      await run("cp", ["--sparse=always", "--", source, ram.path], signal ? { signal } : {});
    } catch (err) {
      ram.close();
      throw wrap(`copy memory file ${source}`, err);
    }
    return ram;
  }

  /** Closes vmpod's descriptor (QEMU holds its own once started). Idempotent. */
  close(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }
}
