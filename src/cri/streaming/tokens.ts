/**
 * The streaming server's one-time tokens: each Exec, Attach or PortForward
 * call stores its request under a fresh random token, which the client's
 * connection consumes. A token works once and only until it expires; the
 * request travels with the token, never in the URL.
 */
import { randomBytes } from "node:crypto";
import { VmpodError } from "../../common/errors.js";
import type { AttachRequest, ExecRequest, PortForwardRequest } from "./types.js";

export type StreamingRequest =
  | { readonly kind: "exec"; readonly request: ExecRequest }
  | { readonly kind: "attach"; readonly request: AttachRequest }
  | { readonly kind: "portforward"; readonly request: PortForwardRequest };

export interface TokenStoreOptions {
  readonly ttlMs: number;
  /** Tokens outstanding at once; past this, new ones are refused. */
  readonly maxTokens?: number;
  /** The clock, in milliseconds (tests pass their own). */
  readonly now?: () => number;
}

export class TokenStore {
  private readonly entries = new Map<string, { readonly value: StreamingRequest; readonly expires: number }>();
  private readonly ttlMs: number;
  private readonly maxTokens: number;
  private readonly now: () => number;

  constructor(options: TokenStoreOptions) {
    this.ttlMs = options.ttlMs;
    this.maxTokens = options.maxTokens ?? 4096;
    this.now = options.now ?? Date.now;
  }

  /** Stores a request and returns its token (URL-safe). */
  issue(value: StreamingRequest): string {
    this.sweep();
    if (this.entries.size >= this.maxTokens) {
      throw new VmpodError("ResourceExhausted", `too many streaming requests in flight (${this.entries.size}); try again shortly`);
    }
    let token: string;
    do token = randomBytes(16).toString("base64url");
    while (this.entries.has(token));
    this.entries.set(token, { value, expires: this.now() + this.ttlMs });
    return token;
  }

  /** The request behind a token, removing it; undefined if unknown, used or expired. */
  consume(token: string): StreamingRequest | undefined {
    const entry = this.entries.get(token);
    if (!entry) return undefined;
    this.entries.delete(token);
    return entry.expires > this.now() ? entry.value : undefined;
  }

  /** Whether a token is live, without using it. */
  has(token: string): boolean {
    const entry = this.entries.get(token);
    return entry !== undefined && entry.expires > this.now();
  }

  get size(): number {
    return this.entries.size;
  }

  clear(): void {
    this.entries.clear();
  }

  private sweep(): void {
    const now = this.now();
    for (const [token, entry] of this.entries) if (entry.expires <= now) this.entries.delete(token);
  }
}
