import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { whileDaemonStarts } from "../../../src/hypervisor/hotplug.js";

const isKind = (kind: string) => (err: unknown) => err instanceof VmpodError && err.kind === kind;
const limits = { timeoutMs: 60_000, retryMs: 1 };

describe("virtio-fs hot-plug: reaching a virtiofsd just started", () => {
  it("tries the chardev again while QEMU finds the daemon not listening yet", async () => {
    let tries = 0;
    await whileDaemonStarts(
      async () => {
        if (++tries < 4) throw new VmpodError("Internal", "qmp chardev-add: refused");
      },
      () => true,
      undefined,
      limits,
    );
    assert.equal(tries, 4);
  });

  it("gives up at once when the daemon has exited, or the failure is not QEMU's refusal", async () => {
    let tries = 0;
    const refused = async () => {
      tries++;
      throw new VmpodError("Internal", "qmp chardev-add: refused");
    };
    await assert.rejects(whileDaemonStarts(refused, () => false, undefined, limits), isKind("Internal"));
    assert.equal(tries, 1);
    tries = 0;
    const gone = async () => {
      tries++;
      throw new VmpodError("Unavailable", "qmp: connection closed");
    };
    await assert.rejects(whileDaemonStarts(gone, () => true, undefined, limits), isKind("Unavailable"));
    assert.equal(tries, 1);
  });

  it("gives up with QEMU's error once the time allowed is spent, and stops when aborted", async () => {
    let tries = 0;
    const refused = async () => {
      tries++;
      throw new VmpodError("Internal", "qmp chardev-add: refused");
    };
    await assert.rejects(whileDaemonStarts(refused, () => true, undefined, { timeoutMs: 0, retryMs: 1 }), isKind("Internal"));
    assert.equal(tries, 1);
    const abort = new AbortController();
    abort.abort(new VmpodError("Canceled", "test"));
    await assert.rejects(whileDaemonStarts(refused, () => true, abort.signal, limits), isKind("Canceled"));
  });
});
