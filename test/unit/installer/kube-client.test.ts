/**
 * The installer's KubeApi over @kubernetes/client-node, against a small
 * HTTP server standing for the API server: the paths, verbs, patch type and
 * bodies it sends, and how API statuses become error kinds.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { KubeConfig } from "@kubernetes/client-node";
import { kindOf } from "../../../src/common/errors.js";
import { ClientNodeKubeApi } from "../../../src/installer/kube-client.js";

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly contentType: string | undefined;
  readonly body: unknown;
}

type Reply = { status: number; body: unknown };

function status(code: number, reason: string): Reply {
  return { status: code, body: { kind: "Status", apiVersion: "v1", status: "Failure", reason, code } };
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString();
  return text === "" ? undefined : JSON.parse(text);
}

describe("installer: KubeApi over client-node", () => {
  let server: Server;
  let seen: Seen[];
  let routes: Map<string, (body: unknown) => Reply>;
  let api: ClientNodeKubeApi;

  before(async () => {
    server = createServer((req, res) => {
      void (async () => {
        const body = await readBody(req);
        seen.push({ method: req.method ?? "", url: req.url ?? "", contentType: req.headers["content-type"], body });
        const route = routes.get(`${req.method} ${(req.url ?? "").split("?")[0]}`);
        const reply = route ? route(body) : status(404, "NotFound");
        res.writeHead(reply.status, { "content-type": "application/json" });
        res.end(JSON.stringify(reply.body));
      })();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const kc = new KubeConfig();
    const port = (server.address() as AddressInfo).port;
    kc.loadFromOptions({
      clusters: [{ name: "test", server: `http://127.0.0.1:${port}`, skipTLSVerify: true }],
      users: [{ name: "installer", token: "t0ken" }],
      contexts: [{ name: "test", cluster: "test", user: "installer" }],
      currentContext: "test",
    });
    api = new ClientNodeKubeApi(kc);
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(() => {
    seen = [];
    routes = new Map();
  });

  it("reads a node's labels and the runtime its kubelet reports", async () => {
    routes.set("GET /api/v1/nodes/node-1", () => ({
      status: 200,
      body: { apiVersion: "v1", kind: "Node", metadata: { name: "node-1", labels: { "kubernetes.io/os": "linux" } }, status: { nodeInfo: { containerRuntimeVersion: "vmpod://0.1.0" } } },
    }));
    assert.deepEqual(await api.getNode("node-1"), { name: "node-1", labels: { "kubernetes.io/os": "linux" }, containerRuntimeVersion: "vmpod://0.1.0" });
    assert.equal(kindOf(await api.getNode("node-9").catch((e: unknown) => e)), "NotFound");
  });

  it("labels and unlabels a node with a JSON merge patch", async () => {
    routes.set("PATCH /api/v1/nodes/node-1", () => ({ status: 200, body: { apiVersion: "v1", kind: "Node", metadata: { name: "node-1" } } }));
    await api.patchNodeLabels("node-1", { "vmpod.io/runtime": "true" });
    await api.patchNodeLabels("node-1", { "vmpod.io/runtime": null });
    assert.deepEqual(
      seen.map((s) => [s.method, s.url, s.contentType, s.body]),
      [
        ["PATCH", "/api/v1/nodes/node-1", "application/merge-patch+json", { metadata: { labels: { "vmpod.io/runtime": "true" } } }],
        ["PATCH", "/api/v1/nodes/node-1", "application/merge-patch+json", { metadata: { labels: { "vmpod.io/runtime": null } } }],
      ],
    );
  });

  it("lists the nodes by label selector", async () => {
    routes.set("GET /api/v1/nodes", () => ({ status: 200, body: { apiVersion: "v1", kind: "NodeList", metadata: {}, items: [{ metadata: { name: "node-2" } }] } }));
    assert.deepEqual(await api.listNodeNames("vmpod.io/runtime=true"), ["node-2"]);
    assert.equal(new URL(seen[0]?.url ?? "", "http://x").searchParams.get("labelSelector"), "vmpod.io/runtime=true");
  });

  it("gets, creates and deletes RuntimeClasses; a missing one is undefined, a taken name AlreadyExists, a gone one no error", async () => {
    const rc = { apiVersion: "node.k8s.io/v1", kind: "RuntimeClass" as const, metadata: { name: "vmpod", labels: { a: "b" } }, handler: "vmpod", overhead: { podFixed: { memory: "384Mi", cpu: "100m" } }, scheduling: { nodeSelector: { "vmpod.io/runtime": "true" } } };
    assert.equal(await api.getRuntimeClass("vmpod"), undefined);
    routes.set("POST /apis/node.k8s.io/v1/runtimeclasses", (body) => ({ status: 201, body }));
    await api.createRuntimeClass(rc);
    assert.deepEqual(seen.at(-1)?.body, rc);
    routes.set("GET /apis/node.k8s.io/v1/runtimeclasses/vmpod", () => ({ status: 200, body: rc }));
    assert.deepEqual(await api.getRuntimeClass("vmpod"), rc);
    routes.set("POST /apis/node.k8s.io/v1/runtimeclasses", () => status(409, "AlreadyExists"));
    assert.equal(kindOf(await api.createRuntimeClass(rc).catch((e: unknown) => e)), "AlreadyExists");
    await api.deleteRuntimeClass("gone");
    routes.set("DELETE /apis/node.k8s.io/v1/runtimeclasses/vmpod", () => ({ status: 200, body: { kind: "Status", apiVersion: "v1", status: "Success" } }));
    await api.deleteRuntimeClass("vmpod");
    assert.deepEqual(seen.filter((s) => s.method === "DELETE").map((s) => s.url), ["/apis/node.k8s.io/v1/runtimeclasses/gone", "/apis/node.k8s.io/v1/runtimeclasses/vmpod"]);
  });

  it("maps forbidden to FailedPrecondition, server errors to Unavailable, and an unreachable server to Unavailable", async () => {
    routes.set("GET /api/v1/nodes/node-1", () => status(403, "Forbidden"));
    assert.equal(kindOf(await api.getNode("node-1").catch((e: unknown) => e)), "FailedPrecondition");
    routes.set("GET /api/v1/nodes/node-1", () => status(503, "ServiceUnavailable"));
    assert.equal(kindOf(await api.getNode("node-1").catch((e: unknown) => e)), "Unavailable");
    const kc = new KubeConfig();
    kc.loadFromOptions({ clusters: [{ name: "c", server: "http://127.0.0.1:1" }], users: [{ name: "u" }], contexts: [{ name: "c", cluster: "c", user: "u" }], currentContext: "c" });
    assert.equal(kindOf(await new ClientNodeKubeApi(kc).getNode("node-1").catch((e: unknown) => e)), "Unavailable");
  });
});
