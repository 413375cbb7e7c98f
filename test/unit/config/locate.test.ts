import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { parseConfig } from "../../../src/config/load.js";
import { keyLines, splitKey } from "../../../src/config/locate.js";

describe("config key lines", () => {
  it("splits dotted keys with bare, basic and literal parts", () => {
    assert.deepEqual(splitKey("hypervisor.qemu.path"), ["hypervisor", "qemu", "path"]);
    assert.deepEqual(splitKey(` registries . "127.0.0.1:5000" . 'mirrors' `), ["registries", "127.0.0.1:5000", "mirrors"]);
    assert.deepEqual(splitKey(`a."b\\"c"`), ["a", 'b"c']);
    assert.equal(splitKey("a..b"), undefined);
    assert.equal(splitKey("a b"), undefined);
    assert.equal(splitKey(""), undefined);
  });

  it("finds keys under tables, dotted keys, and falls back to the holding table", () => {
    const lines = keyLines(
      [
        "# a comment with x = 1", //            1
        "top = 1", //                            2
        "[hypervisor.qemu]", //                  3
        "path = '/q' # trailing", //             4
        "kernel_params = [", //                  5
        '  "a=b",', //                           6
        '  "[not.a.table]",', //                 7
        "]", //                                  8
        'desc = """', //                         9
        "fake = 1", //                           10
        '"""', //                                11
        "  default_vcpus=2", //                  12
        '[registries."docker.io"]', //           13
        "mirrors = []", //                       14
        "[runtime]", //                          15
        "handlers.runc.type = 'oci'", //         16
        "inline = { x = 1 }", //                 17
      ].join("\n"),
    );
    assert.equal(lines.lineOf("top"), 2);
    assert.equal(lines.lineOf("hypervisor.qemu.path"), 4);
    assert.equal(lines.lineOf("hypervisor.qemu.kernel_params"), 5);
    assert.equal(lines.lineOf("hypervisor.qemu.default_vcpus"), 12, "after a multi-line array and string");
    assert.equal(lines.writtenAt("hypervisor.qemu.fake"), undefined, "inside a multi-line string");
    assert.equal(lines.writtenAt("not.a.table"), undefined, "inside a multi-line array");
    assert.equal(lines.lineOf("hypervisor.qemu.machine_type"), 3, "unset: the table's line");
    assert.equal(lines.writtenAt("hypervisor.qemu.machine_type"), undefined);
    assert.equal(lines.lineOf(`registries."docker.io".mirrors`), 14);
    assert.equal(lines.lineOf("runtime.handlers.runc.type"), 16);
    assert.equal(lines.lineOf("runtime.handlers"), 16);
    assert.equal(lines.lineOf("runtime.inline.x"), 17, "inside an inline table: the table's key");
    assert.equal(lines.lineOf("cri.socket"), undefined);
  });
});

describe("configuration errors name the file, the line and the key", () => {
  const errorOf = (text: string): string => {
    try {
      parseConfig(text, "/etc/vmpod/configuration.toml", "/a");
    } catch (err) {
      assert.ok(err instanceof VmpodError && err.kind === "InvalidArgument", String(err));
      return err.message;
    }
    assert.fail("no error");
  };

  it("for a syntax error, with its column", () => {
    assert.match(errorOf("[runtime]\nlog_level = \nx = 1\n"), /^\/etc\/vmpod\/configuration\.toml:2:\d+: not valid TOML: /);
    assert.match(errorOf('[cri]\nsocket = "/run/a.sock"\nsocket = "/run/b.sock"\n'), /^\/etc\/vmpod\/configuration\.toml:3:\d+: not valid TOML/);
  });

  it("for a wrong type or an impossible value", () => {
    const file = ["# vmpod", "", "[hypervisor.qemu]", 'path = "/usr/bin/qemu-system-x86_64"', "default_vcpus = 0"].join("\n");
    assert.equal(errorOf(file), "/etc/vmpod/configuration.toml:5: hypervisor.qemu.default_vcpus = 0 is out of range [1, 255]");
    assert.equal(errorOf("[hypervisor.qemu]\n\ndefault_memory = 64"), "/etc/vmpod/configuration.toml:3: hypervisor.qemu.default_memory = 64 is out of range [128, 1048576]");
    assert.equal(errorOf("[hypervisor.qemu]\ndefault_memory = 256.5"), "/etc/vmpod/configuration.toml:2: hypervisor.qemu.default_memory must be an integer, not 256.5");
    assert.equal(errorOf('[runtime]\nenable_debug = "yes"'), '/etc/vmpod/configuration.toml:2: runtime.enable_debug must be true or false, not "yes"');
    assert.equal(errorOf("[hypervisor.qemu]\naccel = 1"), "/etc/vmpod/configuration.toml:2: hypervisor.qemu.accel must be one of auto, kvm, tcg, not 1");
    assert.equal(errorOf('[hypervisor.qemu]\npath = ""'), '/etc/vmpod/configuration.toml:2: hypervisor.qemu.path must be a non-empty string, not ""');
  });

  it("inside per-name tables and for checks across keys", () => {
    assert.match(errorOf('[runtime.handlers.kata]\ntype = "vm"\n[runtime.handlers.crun]\ntype = "container"'), /^\/etc\/vmpod\/configuration\.toml:4: runtime\.handlers\.crun\.type must be "vm" or "oci"/);
    assert.match(errorOf('[runtime.handlers.crun]\ntype = "oci"'), /^\/etc\/vmpod\/configuration\.toml:1: runtime\.handlers\.crun\.runtime_path must be/);
    assert.match(errorOf('[registries."docker.io"]\n\nmirrors = ["ftp://x"]'), /^\/etc\/vmpod\/configuration\.toml:3: registries\."docker\.io"\.mirrors must be http/);
    assert.match(errorOf('[runtime]\nlog_level = "info"\ndefault_handler = "kata"'), /^\/etc\/vmpod\/configuration\.toml:3: runtime\.default_handler = "kata" is not among runtime\.handlers \(vmpod, runc\)/);
    assert.match(errorOf('[metrics]\nenable = true\naddress = "9100"'), /^\/etc\/vmpod\/configuration\.toml:3: metrics\.address must be host:port/);
  });

  it("and warnings about unknown keys name their lines", () => {
    const { warnings } = parseConfig('[runtime]\ndefault_handler = "x"\nloglevel = "debug"\n[runtime.handlers.x]\ntype = "vm"\nruntime = "/bin/x"\n[registries."r.example"]\nmirors = []', "c.toml", "/a");
    assert.deepEqual(warnings, ["c.toml:3: unknown key runtime.loglevel", "c.toml:6: unknown key runtime.handlers.x.runtime", 'c.toml:8: unknown key registries."r.example".mirors']);
  });
});
