import type { Cache } from "../../src/cache.js";
import type { HttpCache, HttpCacheOptions, RouteCacheOptions } from "../../src/http/http-cache.js";

/** A request as a test route's handler sees it. */
export interface TestRequest {
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  /** The host the framework reports to the handler (with `trustProxy`, X-Forwarded-Host). */
  host: string;
}

/** What a test handler answers. `body` objects are sent as JSON by the framework. */
export interface TestResponse {
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: string | Buffer | Record<string, unknown> | unknown[];
  /** Send the body as a stream instead of a buffer. */
  stream?: boolean;
  /**
   * Throw instead of answering (the framework's error handler answers 500): an Error, or with
   * `"value"` a value that is not one (a string).
   */
  throws?: boolean | "value";
}

export interface TestRoute {
  method?: "GET" | "POST" | "PUT" | "PATCH" | "DELETE";
  path: string;
  cache?: RouteCacheOptions | true;
  handler: (request: TestRequest) => TestResponse | Promise<TestResponse>;
}

export interface TestReply {
  status: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

export interface RequestOptions {
  method?: string;
  url: string;
  headers?: Record<string, string>;
  body?: string;
}

export interface Harness {
  readonly http: HttpCache;
  request(options: RequestOptions): Promise<TestReply>;
  /** Like `request`, with the body as raw bytes (compressed bodies stay compressed). */
  requestRaw(options: RequestOptions): Promise<TestReply & { rawBody: Buffer }>;
  /** A request whose target is written as given, byte for byte (see `sendRaw`). */
  rawTarget(target: string, headers?: Record<string, string>, method?: string): Promise<TestReply>;
  close(): Promise<void>;
}

export type AdapterFactory = (options: {
  cache: Cache;
  http?: Omit<HttpCacheOptions, "cache">;
  routes: TestRoute[];
  /** The framework trusts a proxy in front (`X-Forwarded-Host` is the host). */
  trustProxy?: boolean;
}) => Promise<Harness>;
