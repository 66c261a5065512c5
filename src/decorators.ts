import type { Cache, WrapOptions } from "./cache.js";
import { registerDecoratedMethod } from "./cache.js";
import { InvalidOptionError } from "./errors.js";

/** Options of the standalone {@link cached} decorator. */
export interface CachedOptions<A extends unknown[]> extends WrapOptions<A> {
  /**
   * The cache to use, or a function returning it. A function is called at the first call of
   * the method, so the decorator can be applied before the cache is created (as the seed
   * article's `@cache(expire=60)` is applied before `FastAPICache.init`).
   */
  cache: Cache | (() => Cache);
}

/**
 * A TC39 (standard) method decorator: the TypeScript form of the article's
 * `@cache(expire=60)`. The method must return a promise; results are cached under
 * `ClassName.method:args`.
 *
 * @example
 * class PostsService {
 *   @cached({ cache: () => appCache, ttl: "60s" })
 *   async list(userId?: number) { ... }
 * }
 */
export function cached<This, A extends unknown[], R>(
  options: CachedOptions<A>,
): (
  method: (this: This, ...args: A) => Promise<R>,
  context: ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>,
) => (this: This, ...args: A) => Promise<R> {
  if (
    !options ||
    options.cache === null ||
    (typeof options.cache !== "function" && typeof options.cache !== "object")
  ) {
    throw new InvalidOptionError("cached.cache", "expected a Cache or a function returning one");
  }
  const { cache: source, ...wrapOptions } = options;
  return (method, context) => {
    let decorated: ((this: This, ...args: A) => Promise<R>) | undefined;
    const cachedMethod = function cachedMethod(this: This, ...args: A): Promise<R> {
      if (!decorated) {
        const cache = typeof source === "function" ? source() : source;
        decorated = cache.cached<This, A, R>(wrapOptions)(method, context);
      }
      return decorated.apply(this, args);
    };
    // This function, not the inner one, is what the class holds: the key names its class.
    registerDecoratedMethod(cachedMethod, context);
    return cachedMethod;
  };
}
