/** The request and response shapes the HTTP cache and its adapters exchange. */
import type { HeaderValue } from "./headers.js";

/** A request as the HTTP cache sees it; adapters translate their framework's request. */
export interface HttpRequest {
  readonly method: string;
  /**
   * The request target as received (raw: path and query, percent-encoding untouched, and
   * anything else the client sent, such as a fragment, which makes the request uncacheable).
   */
  readonly url: string;
  /**
   * The host the framework reports to the handler (Fastify `request.host`, Express
   * `req.host`, Hono's URL host: `X-Forwarded-Host` when the app trusts a proxy). Part of the
   * key unless `keyHost: false`.
   */
  readonly host?: string | undefined;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, HeaderValue>>;
}

/** A response as the handler produced it. */
export interface HttpResponse {
  readonly status: number;
  /** Lower-case header names. */
  readonly headers: Readonly<Record<string, HeaderValue>>;
  /** The body, or `undefined` when it is a stream the adapter did not buffer. */
  readonly body: Uint8Array | string | undefined;
  /** Set when the adapter stopped buffering because the body outgrew `maxEntrySize`. */
  readonly tooLarge?: boolean | undefined;
  /**
   * The body is still being written (the head goes out first): {@link HttpCache.prepare}
   * judges the head alone and sets no `ETag`; {@link HttpCache.commit} comes with the body.
   */
  readonly pending?: boolean | undefined;
}

/**
 * What an adapter must send. `body` is `undefined` for 304; for HEAD it is the GET body, which
 * the server drops while keeping its length (Node's HTTP server does so for HEAD). The
 * headers carry no `content-length`: it is `body.length`, which the adapter (or the server)
 * sets.
 */
export interface ReplyPlan {
  readonly status: number;
  readonly headers: Record<string, string | readonly string[]>;
  readonly body: Buffer | undefined;
}

/**
 * Runs a request through the application again, out of band, and captures the response.
 * Adapters provide it (Fastify `inject`, …) so that stale-while-revalidate and
 * stale-if-error can refresh an entry when no client is waiting for the handler.
 */
export type Dispatch = (request: HttpRequest) => Promise<HttpResponse>;
