/**
 * The client of the slow external API that `/posts` proxies (jsonplaceholder in the article).
 * Every failure becomes an {@link UpstreamError} that carries the HTTP status the demo
 * answers with, so that the routes stay a few lines long.
 */

export type UpstreamErrorCode =
  | "E_UPSTREAM_UNREACHABLE"
  | "E_UPSTREAM_STATUS"
  | "E_UPSTREAM_INVALID_JSON"
  | "E_UPSTREAM_TIMEOUT"
  | "E_UPSTREAM_NOT_FOUND";

/** The upstream could not give a usable answer. `statusCode` is what the demo replies. */
export class UpstreamError extends Error {
  readonly code: UpstreamErrorCode;
  readonly statusCode: 404 | 502 | 504;

  constructor(
    code: UpstreamErrorCode,
    statusCode: 404 | 502 | 504,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.statusCode = statusCode;
  }
}

/** No connection could be made (refused, DNS failure, reset). Answered as 502. */
export class UpstreamUnreachableError extends UpstreamError {
  constructor(url: string, cause: unknown) {
    super("E_UPSTREAM_UNREACHABLE", 502, `upstream unreachable: ${url} (${describe(cause)})`, {
      cause,
    });
  }
}

/** The upstream answered with an error status other than 404. Answered as 502. */
export class UpstreamStatusError extends UpstreamError {
  readonly upstreamStatus: number;

  constructor(url: string, status: number) {
    super("E_UPSTREAM_STATUS", 502, `upstream answered ${status} for ${url}`);
    this.upstreamStatus = status;
  }
}

/** The upstream answered 2xx with a body that is not JSON. Answered as 502. */
export class UpstreamInvalidJsonError extends UpstreamError {
  constructor(url: string, cause: unknown) {
    super("E_UPSTREAM_INVALID_JSON", 502, `upstream sent invalid JSON for ${url}`, { cause });
  }
}

/** The upstream did not answer (headers and body) within the timeout. Answered as 504. */
export class UpstreamTimeoutError extends UpstreamError {
  readonly timeoutMs: number;

  constructor(url: string, timeoutMs: number) {
    super("E_UPSTREAM_TIMEOUT", 504, `upstream did not answer within ${timeoutMs} ms: ${url}`);
    this.timeoutMs = timeoutMs;
  }
}

/** The upstream has no such resource. Answered as 404. */
export class UpstreamNotFoundError extends UpstreamError {
  constructor(url: string) {
    super("E_UPSTREAM_NOT_FOUND", 404, `not found upstream: ${url}`);
  }
}

export interface UpstreamOptions {
  /** Base URL, without a trailing slash, e.g. `https://jsonplaceholder.typicode.com`. */
  readonly baseUrl: string;
  /** Longest wait for the whole answer (headers and body), in ms. */
  readonly timeoutMs: number;
}

/**
 * A validated JSON answer: the upstream's own bytes, so that nothing is re-serialized, and its
 * ETag; or, for a conditional request whose validator still matches, 304 without a body.
 */
export type UpstreamJson =
  | { readonly status: 200; readonly body: Buffer; readonly etag: string | undefined }
  | { readonly status: 304; readonly body: undefined; readonly etag: string | undefined };

export interface Upstream {
  readonly baseUrl: string;
  /**
   * GET `path` (starting with `/`, query string included) and check that the answer is JSON.
   * Rejects with an {@link UpstreamError}.
   */
  getJson(path: string, options?: { ifNoneMatch?: string | undefined }): Promise<UpstreamJson>;
}

/** The upstream client, on the global `fetch`. */
export function createUpstream(options: UpstreamOptions): Upstream {
  const { baseUrl, timeoutMs } = options;
  return {
    baseUrl,
    async getJson(path, options) {
      const url = `${baseUrl}${path}`;
      const signal = AbortSignal.timeout(timeoutMs);
      const ifNoneMatch = options?.ifNoneMatch;
      try {
        const response = await fetch(url, {
          signal,
          headers: {
            accept: "application/json",
            ...(ifNoneMatch ? { "if-none-match": ifNoneMatch } : {}),
          },
          redirect: "follow",
        });
        const etag = response.headers.get("etag") ?? undefined;
        if (response.status === 304 && ifNoneMatch) {
          await response.body?.cancel();
          return { status: 304, body: undefined, etag };
        }
        if (response.status === 404) {
          await response.body?.cancel();
          throw new UpstreamNotFoundError(url);
        }
        if (!response.ok) {
          await response.body?.cancel();
          throw new UpstreamStatusError(url, response.status);
        }
        // The body is read under the same signal: a stalled body is a timeout too.
        const body = Buffer.from(await response.arrayBuffer());
        try {
          JSON.parse(body.toString("utf8"));
        } catch (error) {
          throw new UpstreamInvalidJsonError(url, error);
        }
        return { status: 200, body, etag };
      } catch (error) {
        if (error instanceof UpstreamError) throw error;
        if (signal.aborted) throw new UpstreamTimeoutError(url, timeoutMs);
        throw new UpstreamUnreachableError(url, error);
      }
    },
  };
}

/** The most specific reason in an error chain, e.g. `ECONNREFUSED` rather than "fetch failed". */
function describe(error: unknown): string {
  let current: unknown = error;
  let text = "unknown error";
  for (let depth = 0; current !== undefined && current !== null && depth < 5; depth++) {
    if (current instanceof Error) {
      const code = (current as { code?: unknown }).code;
      text = typeof code === "string" ? code : current.message;
      current = current.cause;
    } else {
      text = String(current);
      break;
    }
  }
  return text;
}
