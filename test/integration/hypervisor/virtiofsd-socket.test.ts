import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import koffi from "koffi";
import { isListening } from "../../../src/hypervisor/virtiofsd.js";

describe("virtiofsd's socket, ready only once it listens", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "vmpod-sock-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("is not ready while the socket file is bound but not listening, nor for a plain file or nothing", async () => {
    const bound = join(dir, "bound.sock");
    // A socket bound and not yet listened on, as virtiofsd's is for a moment.
    const libc = koffi.load("libc.so.6");
    const socket = libc.func("int socket(int domain, int type, int protocol)");
    const bind = libc.func("int bind(int fd, void *addr, uint32_t len)");
    const close = libc.func("int close(int fd)");
    const addr = Buffer.alloc(110);
    addr.writeUInt16LE(1, 0); // AF_UNIX
    addr.write(bound, 2);
    const fd = socket(1, 1, 0) as number; // AF_UNIX, SOCK_STREAM
    assert.ok(fd >= 0);
    try {
      assert.equal(bind(fd, addr, addr.length), 0);
      assert.equal(await isListening(bound), false);
    } finally {
      close(fd);
    }
    await writeFile(join(dir, "plain"), "");
    assert.equal(await isListening(join(dir, "plain")), false);
    assert.equal(await isListening(join(dir, "missing.sock")), false);
  });

  it("is ready once a server listens on it", async () => {
    const path = join(dir, "listening.sock");
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(path, resolve));
    try {
      assert.equal(await isListening(path), true);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
