import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { parseOptions } from "../../../guest/agent/options.js";

const invalid = (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument";

describe("guest agent: command line", () => {
  it("defaults to the guest's layout", () => {
    const o = parseOptions([], "/usr/bin/crun");
    assert.deepEqual(o.listen, { kind: "serial", name: "agent.channel.0" });
    assert.equal(o.stateDir, "/run/vmpod-agent");
    assert.equal(o.crun, "/usr/bin/crun");
    assert.equal(o.cgroupRoot, "/sys/fs/cgroup");
    assert.equal(o.resolvConf, "/etc/resolv.conf");
    assert.equal(o.hostnameFile, "/etc/hostname");
  });

  it("takes each option as --name value or --name=value", () => {
    const o = parseOptions(["--listen", "unix:/tmp/a.sock", "--state-dir=/s", "--crun", "crun", "--cgroup-root", "/cg", "--log-level=debug"]);
    assert.deepEqual(o.listen, { kind: "unix", path: "/tmp/a.sock" });
    assert.equal(o.stateDir, "/s");
    assert.equal(o.crun, "crun");
    assert.equal(o.cgroupRoot, "/cg");
    assert.equal(o.logLevel, "debug");
    assert.deepEqual(parseOptions(["--listen=serial:my.port-1"]).listen, { kind: "serial", name: "my.port-1" });
  });

  it("refuses unknown options, missing values, relative paths and bad listen specs", () => {
    assert.throws(() => parseOptions(["--nope"]), invalid);
    assert.throws(() => parseOptions(["--state-dir"]), invalid);
    assert.throws(() => parseOptions(["--state-dir", "relative"]), invalid);
    assert.throws(() => parseOptions(["--listen", "vsock:3:1024"]), invalid);
    assert.throws(() => parseOptions(["--listen", "serial:../x"]), invalid);
    assert.throws(() => parseOptions(["--listen", "unix:rel.sock"]), invalid);
    assert.throws(() => parseOptions(["--log-level", "loud"]), invalid);
  });
});
