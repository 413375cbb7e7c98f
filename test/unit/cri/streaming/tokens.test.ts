import assert from "node:assert/strict";
import { TokenStore } from "../../../../src/cri/streaming/tokens.js";
import { JsonObjectSplitter, ResizeQueue } from "../../../../src/cri/streaming/resize.js";
import { statusJson, statusText } from "../../../../src/cri/streaming/status.js";
import { VmpodError } from "../../../../src/common/errors.js";

const exec = { kind: "exec" as const, request: { containerId: "c1", command: ["sh"], tty: false, stdin: true, stdout: true, stderr: true } };

describe("streaming tokens", () => {
  it("are random, URL-safe and work once", () => {
    const store = new TokenStore({ ttlMs: 1000 });
    const a = store.issue(exec);
    const b = store.issue(exec);
    assert.notEqual(a, b);
    assert.match(a, /^[A-Za-z0-9_-]{22}$/);
    assert.deepEqual(store.consume(a), exec);
    assert.equal(store.consume(a), undefined);
    assert.equal(store.consume("nope"), undefined);
    assert.equal(store.has(b), true);
  });

  it("expire after their time to live, and expired ones are swept", () => {
    let now = 1_000;
    const store = new TokenStore({ ttlMs: 500, now: () => now });
    const early = store.issue(exec);
    now += 499;
    assert.equal(store.has(early), true);
    now += 1;
    assert.equal(store.has(early), false);
    assert.equal(store.consume(early), undefined);
    const late = store.issue(exec);
    now += 600;
    store.issue(exec);
    assert.equal(store.size, 1, "the expired token was swept when a new one was issued");
    assert.equal(store.consume(late), undefined);
  });

  it("refuse new requests past the limit with ResourceExhausted", () => {
    const store = new TokenStore({ ttlMs: 1000, maxTokens: 2 });
    store.issue(exec);
    store.issue(exec);
    assert.throws(() => store.issue(exec), (err: unknown) => err instanceof VmpodError && err.kind === "ResourceExhausted");
  });
});

describe("terminal resize messages", () => {
  it("splits concatenated JSON objects, minding strings", () => {
    const got: string[] = [];
    const splitter = new JsonObjectSplitter((t) => got.push(t));
    assert.equal(splitter.push('{"Width":80,"Height":24}\n{"Wid'), true);
    assert.equal(splitter.push('th":100,"Height":50,"x":"}{"}'), true);
    assert.deepEqual(got, ['{"Width":80,"Height":24}', '{"Width":100,"Height":50,"x":"}{"}']);
    assert.equal(new JsonObjectSplitter(() => undefined).push("[1]"), false);
  });

  it("queue sizes for the runtime and ignore malformed ones", async () => {
    const q = new ResizeQueue();
    q.pushJson('{"Width":80,"Height":24}');
    q.pushJson("not json");
    q.pushJson('{"Width":-1,"Height":24}');
    q.pushJson('{"Width":120,"Height":40}');
    q.end();
    const sizes = [];
    for await (const s of q) sizes.push(s);
    assert.deepEqual(sizes, [{ width: 80, height: 24 }, { width: 120, height: 40 }]);
  });
});

describe("remote command status", () => {
  it("is Kubernetes' metav1.Status for v4", () => {
    assert.equal(statusJson({ kind: "exited", code: 0 }), '{"metadata":{},"status":"Success"}');
    assert.deepEqual(JSON.parse(statusJson({ kind: "exited", code: 3, command: ["sh", "-c", "exit 3"] })), {
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "3" }] },
    });
    const failed = JSON.parse(statusJson({ kind: "failed", error: new Error("boom") })) as { status: string; reason: string; message: string };
    assert.equal(failed.status, "Failure");
    assert.equal(failed.reason, "InternalError");
    assert.match(failed.message, /boom/);
  });

  it("is plain text, empty on success, before v4", () => {
    assert.equal(statusText({ kind: "exited", code: 0 }), "");
    assert.match(statusText({ kind: "exited", code: 2 }), /non-zero exit code: exit code 2/);
  });
});
