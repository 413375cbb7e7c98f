/**
 * A front proxy for the test registry that can misbehave on demand: serve one
 * blob with a byte flipped (length kept), fail the next N requests with 500,
 * or cut a blob's body after K bytes (to test resuming). It counts the
 * requests it sees per path, so it also stands in for a mirror whose traffic
 * tests can check.
 */
import { createServer, request, type IncomingMessage, type ServerResponse } from "node:http";
import { closeServer, listenLoopback } from "./free-port.js";

/** One request the proxy handled. */
export interface ProxiedRequest {
  readonly method: string;
  readonly path: string;
  readonly range?: string;
  readonly status: number;
  /** What the proxy did to it. */
  readonly fault?: "failed" | "corrupted" | "cut";
}

export interface RegistryProxy {
  /** "127.0.0.1:PORT" */
  readonly host: string;
  /** "http://127.0.0.1:PORT" */
  readonly url: string;
  readonly requests: readonly ProxiedRequest[];
  /** Requests per path (query string dropped). */
  counts(): Map<string, number>;
  /** Requests whose path equals `path` or matches it, with `method` when given. */
  count(path: string | RegExp, method?: string): number;
  /** Every later GET of this blob gets one byte flipped in its middle, same length. */
  corruptBlob(digest: string): void;
  /** The next `n` requests (matching `path` when given) are answered 500 without reaching the registry. */
  failNext(n: number, path?: RegExp): void;
  /** The next `times` GETs of this blob send their headers and `afterBytes` bytes, then drop the connection. */
  cutBlob(digest: string, afterBytes: number, times?: number): void;
  /** Forgets faults and counts. */
  reset(): void;
  stop(): Promise<void>;
}

/** Starts a proxy on a free loopback port in front of `target` ("127.0.0.1:PORT"). */
export async function startProxy(target: string): Promise<RegistryProxy> {
  const requests: ProxiedRequest[] = [];
  const corrupt = new Set<string>();
  const cuts = new Map<string, { afterBytes: number; times: number }>();
  let failures: { n: number; path: RegExp | undefined } = { n: 0, path: undefined };
  const [targetHost, targetPort] = splitHost(target);

  const server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0] as string;
    const range = req.headers.range;
    const record = (status: number, fault?: ProxiedRequest["fault"]): void => {
      requests.push({ method: req.method ?? "GET", path, ...(range === undefined ? {} : { range }), status, ...(fault === undefined ? {} : { fault }) });
    };
    if (failures.n > 0 && (failures.path === undefined || failures.path.test(path))) {
      failures = { n: failures.n - 1, path: failures.path };
      record(500, "failed");
      req.resume();
      res.writeHead(500, { "content-type": "text/plain" }).end("injected failure");
      return;
    }
    const blob = /\/blobs\/(sha256:[a-f0-9]{64})$/.exec(path)?.[1];
    const isBlobGet = req.method === "GET" && blob !== undefined;
    const upstream = request(
      { host: targetHost, port: targetPort, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        const cut = isBlobGet ? cuts.get(blob) : undefined;
        if (isBlobGet && cut !== undefined && up.statusCode !== undefined && up.statusCode < 300) {
          if (--cut.times <= 0) cuts.delete(blob);
          record(up.statusCode, "cut");
          cutBody(up, res, cut.afterBytes);
        } else if (isBlobGet && corrupt.has(blob) && up.statusCode !== undefined && up.statusCode < 300) {
          record(up.statusCode, "corrupted");
          corruptBody(up, res);
        } else {
          record(up.statusCode ?? 0);
          res.writeHead(up.statusCode ?? 502, up.headers);
          up.pipe(res);
        }
      },
    );
    upstream.on("error", (err) => {
      record(502);
      if (!res.headersSent) res.writeHead(502, { "content-type": "text/plain" });
      res.end(`proxy: ${err.message}`);
    });
    req.pipe(upstream);
  });

  const host = await listenLoopback(server);
  const matches = (r: ProxiedRequest, path: string | RegExp, method?: string): boolean =>
    (typeof path === "string" ? r.path === path : path.test(r.path)) && (method === undefined || r.method === method);
  return {
    host,
    url: `http://${host}`,
    requests,
    counts: () => {
      const counts = new Map<string, number>();
      for (const r of requests) counts.set(r.path, (counts.get(r.path) ?? 0) + 1);
      return counts;
    },
    count: (path, method) => requests.filter((r) => matches(r, path, method)).length,
    corruptBlob: (digest) => void corrupt.add(digest),
    failNext: (n, path) => {
      failures = { n, path };
    },
    cutBlob: (digest, afterBytes, times = 1) => void cuts.set(digest, { afterBytes, times }),
    reset: () => {
      requests.length = 0;
      corrupt.clear();
      cuts.clear();
      failures = { n: 0, path: undefined };
    },
    stop: () => closeServer(server),
  };
}

function splitHost(host: string): [string, number] {
  const colon = host.lastIndexOf(":");
  return [host.slice(0, colon), Number(host.slice(colon + 1))];
}

/**
 * Flips the byte in the middle of the whole blob. A ranged answer
 * (206, Content-Range: bytes START-END/TOTAL) flips it only when that byte
 * falls inside the range, at its place in the range.
 */
function corruptBody(up: IncomingMessage, res: ServerResponse): void {
  const total = Number(/\/(\d+)$/.exec(up.headers["content-range"] ?? "")?.[1] ?? up.headers["content-length"] ?? 0);
  const start = Number(/bytes (\d+)-/.exec(up.headers["content-range"] ?? "")?.[1] ?? 0);
  const target = Math.floor(total / 2);
  let offset = start;
  res.writeHead(up.statusCode ?? 200, up.headers);
  up.on("data", (chunk: Buffer) => {
    if (target >= offset && target < offset + chunk.length) {
      chunk = Buffer.from(chunk);
      chunk[target - offset] = (chunk[target - offset] as number) ^ 0xff;
    }
    offset += chunk.length;
    res.write(chunk);
  });
  up.on("end", () => res.end());
}

/** Sends the headers (full length announced) and the first `afterBytes` bytes, then drops the connection. */
function cutBody(up: IncomingMessage, res: ServerResponse, afterBytes: number): void {
  res.writeHead(up.statusCode ?? 200, up.headers);
  let sent = 0;
  let done = false;
  up.on("data", (chunk: Buffer) => {
    if (done) return;
    const room = afterBytes - sent;
    if (chunk.length >= room) {
      done = true;
      up.destroy();
      // The bytes written so far leave before the connection drops.
      res.write(chunk.subarray(0, Math.max(room, 0)), () => res.destroy());
      return;
    }
    sent += chunk.length;
    res.write(chunk);
  });
}
