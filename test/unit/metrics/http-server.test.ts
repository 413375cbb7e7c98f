/**
 * The metrics endpoint on a loopback port: /metrics in the text format with
 * every vmpod family and its help, /healthz flipping from 503 to 200 with
 * the CRI server's readiness and back, other paths and methods refused, a
 * port in use refused, and closing.
 */
import assert from "node:assert/strict";
import { createServer } from "node:net";
import type { AddressInfo } from "node:net";
import { kindOf } from "../../../src/common/errors.js";
import { silentLogger } from "../../../src/common/log.js";
import { DaemonMetrics } from "../../../src/metrics/daemon-metrics.js";
import { parseListenAddress } from "../../../src/metrics/http-server.js";
import { families, parseExposition, valueOf, VMPOD_FAMILIES } from "./samples.js";

describe("metrics: the HTTP endpoint", () => {
  let ready: boolean;
  let metrics: DaemonMetrics;
  let base: string;

  beforeEach(async () => {
    ready = false;
    metrics = new DaemonMetrics({ address: "127.0.0.1:0", ready: () => ready, logger: silentLogger, processMetrics: true });
    const address = await metrics.start();
    assert.match(address, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(address, "127.0.0.1:0");
    base = `http://${address}`;
  });
  afterEach(async () => {
    await metrics.close();
  });

  it("answers /healthz 503 until the CRI server is ready, then 200, and 503 again when it goes", async () => {
    let res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 503);
    assert.match(await res.text(), /not ready/);
    ready = true;
    res = await fetch(`${base}/healthz`);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), "ok\n");
    ready = false;
    assert.equal((await fetch(`${base}/healthz`)).status, 503);
  });

  it("serves every vmpod family with its help and type, and Node's process families, in the text format", async () => {
    metrics.cri.callEnded("Version", "OK", 0.002);
    const res = await fetch(`${base}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const f = families(text);
    for (const name of VMPOD_FAMILIES) {
      assert.ok(f.has(name), `family ${name} is missing`);
      assert.ok((f.get(name)?.help.length ?? 0) > 20, `family ${name} has no real help`);
    }
    assert.equal(f.get("vmpod_cri_request_duration_seconds")?.type, "histogram");
    assert.equal(f.get("vmpod_image_pull_bytes_total")?.type, "counter");
    const s = parseExposition(text);
    assert.equal(valueOf(s, "vmpod_cri_requests_total", { method: "Version", code: "OK" }), 1);
    assert.ok((valueOf(s, "vmpod_process_resident_memory_bytes") ?? 0) > 0);
    // HEAD: the headers alone.
    const head = await fetch(`${base}/metrics`, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(await head.text(), "");
  });

  it("refuses other paths and methods", async () => {
    assert.equal((await fetch(`${base}/`)).status, 404);
    assert.equal((await fetch(`${base}/metrics/x`)).status, 404);
    const post = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  });

  it("closes once however often asked, and refuses connections after", async () => {
    await Promise.all([metrics.close(), metrics.close()]);
    await assert.rejects(fetch(`${base}/healthz`));
  });
});

describe("metrics: the listen address", () => {
  it("parses host:port, IPv6 in brackets, and refuses the rest", () => {
    assert.deepEqual(parseListenAddress("127.0.0.1:8090"), { host: "127.0.0.1", port: 8090 });
    assert.deepEqual(parseListenAddress("localhost:0"), { host: "localhost", port: 0 });
    assert.deepEqual(parseListenAddress("[::1]:9100"), { host: "::1", port: 9100 });
    for (const bad of ["8090", ":8090", "host:", "host:99999", "host:x", "host:1.5"]) {
      assert.throws(() => parseListenAddress(bad), (err: unknown) => kindOf(err) === "InvalidArgument", bad);
    }
  });

  it("refuses a port another server holds, as Unavailable", async () => {
    const other = createServer();
    await new Promise<void>((resolve) => other.listen(0, "127.0.0.1", resolve));
    const port = (other.address() as AddressInfo).port;
    const metrics = new DaemonMetrics({ address: `127.0.0.1:${port}`, ready: () => true, logger: silentLogger, processMetrics: false });
    try {
      await assert.rejects(metrics.start(), (err: unknown) => kindOf(err) === "Unavailable");
    } finally {
      await metrics.close();
      await new Promise((resolve) => other.close(resolve));
    }
  });
});
