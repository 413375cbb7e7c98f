/**
 * The HTTP exchange under the registry client and its token flow: one
 * undici request with the client's timeouts and user agent, and reading a
 * response body whole under a size limit.
 */
import { request, type Dispatcher } from "undici";
import { VmpodError } from "../../common/errors.js";

export interface Timeouts {
  /** Milliseconds to open a connection (TCP and TLS). */
  readonly connectMs: number;
  /** Milliseconds from sending a request to its response headers. */
  readonly headersMs: number;
  /** Milliseconds a response body may stay silent. */
  readonly bodyIdleMs: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = { connectMs: 30_000, headersMs: 60_000, bodyIdleMs: 120_000 };

export interface SendOptions {
  readonly method?: "GET" | "POST" | "HEAD";
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: string;
  readonly dispatcher: Dispatcher;
  readonly signal?: AbortSignal | undefined;
  readonly timeouts: Timeouts;
}

export type Response = Dispatcher.ResponseData;

export function send(url: string, options: SendOptions): Promise<Response> {
  return request(url, {
    method: options.method ?? "GET",
    headers: options.headers,
    ...(options.body === undefined ? {} : { body: options.body }),
    dispatcher: options.dispatcher,
    ...(options.signal ? { signal: options.signal } : {}),
    headersTimeout: options.timeouts.headersMs,
    bodyTimeout: options.timeouts.bodyIdleMs,
  });
}

/** A response header's value (the first when repeated). */
export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/** All values of a repeated header. */
export function headerValues(res: Response, name: string): string[] {
  const v = res.headers[name.toLowerCase()];
  if (v === undefined) return [];
  return Array.isArray(v) ? v : [v];
}

/**
 * The whole body, refusing (InvalidArgument) more than `limit` bytes, by
 * Content-Length before reading and by count while reading.
 */
export async function readBody(res: Response, limit: number, what: string): Promise<Buffer> {
  const length = Number(header(res, "content-length"));
  if (Number.isFinite(length) && length > limit) {
    res.body.destroy();
    throw new VmpodError("InvalidArgument", `${what} is ${length} bytes, more than the ${limit} allowed`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body) {
    const b = chunk as Buffer;
    size += b.length;
    if (size > limit) {
      res.body.destroy();
      throw new VmpodError("InvalidArgument", `${what} is more than the ${limit} bytes allowed`);
    }
    chunks.push(b);
  }
  return Buffer.concat(chunks);
}

/** Reads (up to a small limit) and drops a body we do not need, so the connection can be reused. */
export async function drain(res: Response): Promise<Buffer | undefined> {
  try {
    return await readBody(res, 64 * 1024, "error body");
  } catch {
    res.body.destroy();
    return undefined;
  }
}
