import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { chooseConfigFile, fileInForce, renderConfigPaths, SYSTEM_CONFIG_PATH } from "../../../src/config/discovery.js";

const PACKAGED = "/opt/vmpod/config/configuration.toml";
const existing = (...paths: string[]) => (p: string) => Promise.resolve(paths.includes(p));

describe("configuration discovery", () => {
  it("takes --config first, then VMPOD_CONFIG, then /etc/vmpod, then the packaged default", async () => {
    const all = existing("/a.toml", "/b.toml", SYSTEM_CONFIG_PATH, PACKAGED);
    assert.equal(fileInForce(await chooseConfigFile({ flag: "/a.toml", env: "/b.toml", packaged: PACKAGED }, all)), "/a.toml");
    assert.equal(fileInForce(await chooseConfigFile({ env: "/b.toml", packaged: PACKAGED }, all)), "/b.toml");
    assert.equal(fileInForce(await chooseConfigFile({ env: "", packaged: PACKAGED }, all)), SYSTEM_CONFIG_PATH, "an empty VMPOD_CONFIG is unset");
    assert.equal(fileInForce(await chooseConfigFile({ packaged: PACKAGED }, existing(PACKAGED))), PACKAGED);
    const none = await chooseConfigFile({ packaged: PACKAGED }, existing());
    assert.equal(fileInForce(none), undefined, "built-in defaults");
    assert.equal(none.inForce, undefined);
  });

  it("refuses a named file that is missing rather than falling back", async () => {
    for (const inputs of [{ flag: "/missing.toml", packaged: PACKAGED }, { env: "/missing.toml", packaged: PACKAGED }]) {
      const choice = await chooseConfigFile(inputs, existing(SYSTEM_CONFIG_PATH, PACKAGED));
      assert.equal(choice.inForce, undefined);
      assert.throws(() => fileInForce(choice), (err: unknown) => err instanceof VmpodError && err.kind === "FailedPrecondition" && err.message.includes("/missing.toml"));
    }
  });

  it("prints every place in order, which exist, and which is in force", async () => {
    const text = renderConfigPaths(await chooseConfigFile({ env: "/b.toml", system: "/etc/x.toml", packaged: PACKAGED }, existing("/b.toml", PACKAGED)));
    const lines = text.trimEnd().split("\n");
    assert.equal(lines.length, 4);
    assert.match(lines[0] ?? "", /^ {2}--config +- +not given$/);
    assert.match(lines[1] ?? "", /^\* VMPOD_CONFIG +\/b\.toml +exists, in force$/);
    assert.match(lines[2] ?? "", /^ {2}system +\/etc\/x\.toml +missing$/);
    assert.match(lines[3] ?? "", /^ {2}packaged +\/opt\/vmpod\/config\/configuration\.toml +exists$/);
    const none = renderConfigPaths(await chooseConfigFile({ packaged: PACKAGED }, existing()));
    assert.match(none, /built-in defaults in force/);
    const missing = renderConfigPaths(await chooseConfigFile({ flag: "/nope.toml", packaged: PACKAGED }, existing(PACKAGED)));
    assert.match(missing, /^ {2}--config +\/nope\.toml +missing$/m);
    assert.match(missing, /^error: --config names \/nope\.toml, which does not exist$/m);
  });
});
