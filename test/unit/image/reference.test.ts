import assert from "node:assert/strict";
import { VmpodError } from "../../../src/common/errors.js";
import { formatReference, isImageIdLike, parseReference, repoDigest, repoTag } from "../../../src/image/reference.js";
import type { ImageReference } from "../../../src/image/types.js";

const D = `sha256:${"ab".repeat(32)}` as const;
const HEX = "0123456789abcdef".repeat(4);

describe("image references", () => {
  const valid: [string, ImageReference, string][] = [
    ["busybox", { registry: "docker.io", repository: "library/busybox", tag: "latest" }, "docker.io/library/busybox:latest"],
    ["busybox:1.36", { registry: "docker.io", repository: "library/busybox", tag: "1.36" }, "docker.io/library/busybox:1.36"],
    ["user/app", { registry: "docker.io", repository: "user/app", tag: "latest" }, "docker.io/user/app:latest"],
    ["docker.io/busybox", { registry: "docker.io", repository: "library/busybox", tag: "latest" }, "docker.io/library/busybox:latest"],
    ["index.docker.io/user/app:v1", { registry: "docker.io", repository: "user/app", tag: "v1" }, "docker.io/user/app:v1"],
    ["docker.io/library/busybox:latest", { registry: "docker.io", repository: "library/busybox", tag: "latest" }, "docker.io/library/busybox:latest"],
    ["localhost/a", { registry: "localhost", repository: "a", tag: "latest" }, "localhost/a:latest"],
    ["localhost:5000/a", { registry: "localhost:5000", repository: "a", tag: "latest" }, "localhost:5000/a:latest"],
    ["127.0.0.1:5000/a/b:tag", { registry: "127.0.0.1:5000", repository: "a/b", tag: "tag" }, "127.0.0.1:5000/a/b:tag"],
    ["[::1]:5000/a", { registry: "[::1]:5000", repository: "a", tag: "latest" }, "[::1]:5000/a:latest"],
    [`reg.example/a@${D}`, { registry: "reg.example", repository: "a", digest: D }, `reg.example/a@${D}`],
    [`a:tag@${D}`, { registry: "docker.io", repository: "library/a", tag: "tag", digest: D }, `docker.io/library/a:tag@${D}`],
    ["registry.k8s.io/pause:3.10", { registry: "registry.k8s.io", repository: "pause", tag: "3.10" }, "registry.k8s.io/pause:3.10"],
    ["Reg.Example:443/x/y_z/a.b/c-d/e__f/g---h:V_1.0-rc", { registry: "Reg.Example:443", repository: "x/y_z/a.b/c-d/e__f/g---h", tag: "V_1.0-rc" }, "Reg.Example:443/x/y_z/a.b/c-d/e__f/g---h:V_1.0-rc"],
    // Docker's rule: an uppercase first component is a host, not a repository.
    ["Registry/app", { registry: "Registry", repository: "app", tag: "latest" }, "Registry/app:latest"],
    ["a/b/c/d", { registry: "docker.io", repository: "a/b/c/d", tag: "latest" }, "docker.io/a/b/c/d:latest"],
  ];
  for (const [input, expected, canonical] of valid) {
    it(`parses ${input}`, () => {
      const ref = parseReference(input);
      assert.deepEqual(ref, expected);
      assert.equal(formatReference(ref), canonical);
      assert.deepEqual(parseReference(canonical), expected, "the canonical form parses back to the same reference");
    });
  }

  const invalid: [string, RegExp][] = [
    ["", /empty/],
    ["Busybox", /must be lowercase/],
    ["docker.io/User/app", /must be lowercase/],
    ["busybox:", /tag "" is not valid/],
    ["busybox:-x", /tag "-x" is not valid/],
    [`busybox:${"a".repeat(129)}`, /is not valid/],
    ["busybox@sha256:abc", /not a sha256 digest/],
    [`busybox@md5:${HEX.slice(0, 32)}`, /not a sha256 digest/],
    ["a//b", /empty component/],
    ["a/b/", /empty component/],
    ["reg.example/", /repository name is missing/],
    ["a_-b", /lowercase letters and digits/],
    ["-a", /lowercase letters and digits/],
    ["a.", /lowercase letters and digits/],
    ["a b", /white space/],
    [" busybox", /white space/],
    ["bad_host.example:port/a", /not a valid registry host/],
    ["-host.example/a", /not a valid registry host/],
    [HEX, /image id, not a repository/],
    [`reg.example/${"a/".repeat(130)}b`, /longer than 255/],
    [":tag", /repository name is missing/],
  ];
  for (const [input, message] of invalid) {
    it(`refuses ${JSON.stringify(input.length > 40 ? `${input.slice(0, 40)}…` : input)}`, () => {
      assert.throws(
        () => parseReference(input),
        (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument" && message.test(err.message) && err.message.includes("invalid image reference"),
      );
    });
  }

  it("gives repo tags and repo digests", () => {
    const ref = parseReference("busybox");
    assert.equal(repoTag(ref), "docker.io/library/busybox:latest");
    assert.equal(repoDigest(ref, D), `docker.io/library/busybox@${D}`);
    assert.equal(repoTag(parseReference(`busybox@${D}`)), undefined, "a reference by digest alone has no tag");
    assert.equal(repoTag(parseReference(`busybox:1@${D}`)), "docker.io/library/busybox:1");
  });

  it("tells image ids from repositories", () => {
    assert.equal(isImageIdLike(HEX), true);
    assert.equal(isImageIdLike(`sha256:${HEX}`), true);
    assert.equal(isImageIdLike(HEX.slice(1)), false);
    assert.equal(isImageIdLike(HEX.toUpperCase()), false);
    assert.equal(isImageIdLike("busybox"), false);
    assert.equal(isImageIdLike(`busybox@sha256:${HEX}`), false);
  });
});
