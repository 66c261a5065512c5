import type { Cache, CachedMethodDecorator, CachedMethodOptions } from "./cache.js";
import { registerDecoratedMethod } from "./cache.js";
import { InvalidOptionError } from "./errors.js";

/** Options of the standalone {@link cached} decorator. */
export interface CachedOptions<This = unknown, A extends unknown[] = unknown[]>
  extends CachedMethodOptions<This, A> {
  /**
   * The cache to use, or a function returning it. A function is called at the first call of
   * the method, so the decorator can be applied before the cache is created (as the seed
   * article's `@cache(expire=60)` is applied before `FastAPICache.init`).
   */
  cache: Cache | (() => Cache);
}

/**
 * A method decorator, TC39 (standard) or legacy (`experimentalDecorators`, NestJS's
 * default): the TypeScript form of the article's `@cache(expire=60)`. The method must return
 * a promise; results are cached under `ClassName.method:args`, plus what `scope` takes from
 * the instance (by default its own data fields, so that instances holding different state
 * never share an entry).
 *
 * @example
 * class PostsService {
 *   @cached({ cache: () => appCache, ttl: "60s" })
 *   async list(userId?: number) { ... }
 * }
 */
export function cached<This, A extends unknown[], R>(
  options: CachedOptions<This, A>,
): CachedMethodDecorator<This, A, R> {
  if (
    !options ||
    options.cache === null ||
    (typeof options.cache !== "function" && typeof options.cache !== "object")
  ) {
    throw new InvalidOptionError("cached.cache", "expected a Cache or a function returning one");
  }
  const { cache: source, ...methodOptions } = options;
  function decorator(value: unknown, context: unknown, descriptor?: PropertyDescriptor): unknown {
    const legacy =
      descriptor !== undefined && (typeof context === "string" || typeof context === "symbol");
    const method = legacy ? descriptor.value : value;
    const site = legacy
      ? {
          kind: "method" as const,
          name: context as string | symbol,
          static: typeof value === "function",
        }
      : (context as ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>);
    if (
      typeof method !== "function" ||
      typeof site !== "object" ||
      site === null ||
      site.kind !== "method"
    ) {
      throw new InvalidOptionError("@cached", "applies to class methods only");
    }
    let decorated: ((this: This, ...args: A) => Promise<R>) | undefined;
    const cachedMethod = function cachedMethod(this: This, ...args: A): Promise<R> {
      if (!decorated) {
        const cache = typeof source === "function" ? source() : source;
        decorated = cache.cached<This, A, R>(methodOptions)(
          method as (this: This, ...args: A) => Promise<R>,
          site as ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>,
        );
      }
      return decorated.apply(this, args);
    };
    // This function, not the inner one, is what the class holds: the key names its class.
    registerDecoratedMethod(cachedMethod, site);
    return legacy ? { ...descriptor, value: cachedMethod } : cachedMethod;
  }
  return decorator as CachedMethodDecorator<This, A, R>;
}
