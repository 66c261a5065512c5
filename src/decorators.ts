import type { Cache, CachedMethodDecorator, CachedMethodOptions, WrapOptions } from "./cache.js";
import { engineOf, isCache } from "./engine/registry.js";
import { InvalidOptionError } from "./errors.js";
import { argsKey } from "./keys.js";

/** Options of the standalone {@link cached} decorator. */
export interface CachedOptions<This = unknown, A extends unknown[] = unknown[]>
  extends CachedMethodOptions<This, A> {
  /**
   * The cache to use, or a function returning it. A function is called when the method is
   * called, with the instance, so the decorator can be applied before the cache is created (as
   * the seed article's `@cache(expire=60)` is applied before `FastAPICache.init`), and can take
   * the cache from the instance: `cache: (self: PostsService) => self.cache` for a cache
   * injected into the constructor (NestJS's `@InjectCache()`).
   */
  cache: Cache | ((self: This) => Cache);
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
    // One decorated method per cache: instances may hold different caches.
    const decorated = new WeakMap<Cache, (this: This, ...args: A) => Promise<R>>();
    const cachedMethod = function cachedMethod(this: This, ...args: A): Promise<R> {
      const cache = typeof source === "function" ? source(this) : source;
      let call = decorated.get(cache);
      if (!call) {
        if (!isCache(cache)) {
          // The method returns a promise: the mistake is a rejection, as its own errors are.
          return Promise.reject(
            new InvalidOptionError(
              "cached.cache",
              `the function returned ${cache === null ? "null" : typeof cache}, not a Cache`,
            ),
          );
        }
        call = cache.cached<This, A, R>(methodOptions)(
          method as (this: This, ...args: A) => Promise<R>,
          site as ClassMethodDecoratorContext<This, (this: This, ...args: A) => Promise<R>>,
        );
        decorated.set(cache, call);
      }
      return call.apply(this, args);
    };
    // This function, not the inner one, is what the class holds: the key names its class.
    registerDecoratedMethod(cachedMethod, site);
    return legacy ? { ...descriptor, value: cachedMethod } : cachedMethod;
  }
  return decorator as CachedMethodDecorator<This, A, R>;
}

/**
 * What `cache.cached(options)` returns: a method decorator backed by `cache`, TC39 or legacy
 * (`experimentalDecorators`). The key is `ClassName.method:args`, plus what `scope` takes from
 * the instance (see {@link CachedMethodOptions.scope}).
 */
export function methodDecorator<This, A extends unknown[], R>(
  cache: Cache,
  options: CachedMethodOptions<This, A> = {},
): CachedMethodDecorator<This, A, R> {
  const { scope = "instance", ...wrapOptions } = options;
  if (scope !== "instance" && scope !== "shared" && typeof scope !== "function") {
    throw new InvalidOptionError(
      "cached.scope",
      `expected "instance", "shared" or a function of the instance, got ${JSON.stringify(scope)}`,
    );
  }
  engineOf(cache).tiers.policy(wrapOptions, "cached");
  const userKey = wrapOptions.key;
  const install = (
    method: (this: This, ...args: A) => Promise<R>,
    site: { readonly static: boolean; readonly name: string | symbol },
    ownerOf: (self: unknown) => string | undefined,
  ) => {
    const methodName = String(site.name);
    let wrapped: ((scoped: unknown, ...args: A) => Promise<R>) | undefined;
    const cachedMethod = function cachedMethod(this: This, ...args: A): Promise<R> {
      if (!wrapped) {
        const name = wrapOptions.name ?? `${ownerOf(this) || "anonymous"}.${methodName}`;
        wrapped = cache.wrap(
          function call(this: This, _scoped: unknown, ...rest: A) {
            return method.apply(this, rest);
          },
          {
            ...wrapOptions,
            name,
            key: (scoped: unknown, ...rest: A) => {
              const part = userKey ? userKey(...rest) : undefined;
              const base = userKey
                ? typeof part === "string"
                  ? part
                  : argsKey([part])
                : argsKey(rest);
              return scoped === SHARED ? base : [scoped, base];
            },
          } as WrapOptions<[unknown, ...A]>,
        ) as (scoped: unknown, ...args: A) => Promise<R>;
      }
      const scoped =
        scope === "shared"
          ? SHARED
          : scope === "instance"
            ? instanceScope(this)
            : (scope as (self: This) => unknown)(this);
      return wrapped.call(this, scoped, ...args);
    };
    registerDecoratedMethod(cachedMethod, site);
    return cachedMethod;
  };
  function decorator(value: unknown, context: unknown, descriptor?: PropertyDescriptor): unknown {
    if (descriptor !== undefined && (typeof context === "string" || typeof context === "symbol")) {
      // Legacy (experimentalDecorators): (prototype or constructor, name, descriptor).
      if (typeof descriptor.value !== "function") {
        throw new InvalidOptionError("@cached", "applies to class methods only");
      }
      const isStatic = typeof value === "function";
      const site = { static: isStatic, name: context };
      const installed = install(descriptor.value, site, (self) => declaringClassName(self, site));
      return { ...descriptor, value: installed };
    }
    const ctx = context as ClassMethodDecoratorContext<
      This,
      (this: This, ...args: A) => Promise<R>
    >;
    if (typeof ctx !== "object" || ctx === null || ctx.kind !== "method") {
      throw new InvalidOptionError("@cached", "applies to class methods only");
    }
    return install(value as (this: This, ...args: A) => Promise<R>, ctx, (self) =>
      declaringClassName(self, ctx),
    );
  }
  return decorator as CachedMethodDecorator<This, A, R>;
}

/** The scope of a method whose results do not depend on its instance. */
const SHARED = Symbol("shared");

/** The default scope: the instance's data, or {@link SHARED} when it holds none. */
function instanceScope(self: unknown): unknown {
  const state = instanceState(self);
  return state !== null && typeof state === "object" && Object.keys(state).length === 0
    ? SHARED
    : state;
}

/**
 * An instance's own data, as a key part: primitives, and plain objects and arrays of them
 * (recursively, to a small depth); objects of a class stand for a dependency (a client), not
 * for state that selects results, and are left out, as are functions. `undefined` for a
 * receiver that is not an object (a static method's class gives its static data).
 */
function instanceState(self: unknown, depth = 0): unknown {
  if (self === null || (typeof self !== "object" && typeof self !== "function")) return self;
  if (depth > 4) return "…";
  if (Array.isArray(self)) return self.map((v) => instanceState(v, depth + 1));
  if (self instanceof Date) return self.toISOString();
  const proto = Object.getPrototypeOf(self);
  const plain = proto === Object.prototype || proto === null;
  if (depth > 0 && !plain) return undefined;
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(self)) {
    const v = (self as Record<string, unknown>)[name];
    if (v === undefined || typeof v === "function" || typeof v === "symbol") continue;
    if (v !== null && typeof v === "object") {
      const state = instanceState(v, depth + 1);
      if (state !== undefined) out[name] = state;
    } else {
      out[name] = typeof v === "bigint" ? `${v}n` : v;
    }
  }
  return out;
}

/** Functions installed by `@cached`, with the decorator context each replaces a method for. */
const decoratedMethods = new WeakMap<object, object>();

/**
 * Record that `installed` is what the class holds for the method of `context`, so that a call
 * can find the class that declares it (see {@link declaringClassName}).
 */
export function registerDecoratedMethod(installed: object, context: object): void {
  decoratedMethods.set(installed, context);
}

/**
 * The name of the class that declares a decorated method, found from the receiver of a call
 * by walking its prototype chain to the object holding the decorated function. Not
 * `this.constructor.name`: a subclass calling first (or through `super`) would otherwise name
 * the key, making it depend on call order and collide with the subclass's own method.
 */
function declaringClassName(
  self: unknown,
  context: { readonly static: boolean; readonly name: string | symbol },
): string | undefined {
  if ((typeof self !== "object" && typeof self !== "function") || self === null) return undefined;
  let holder: object | null = context.static ? self : Object.getPrototypeOf(self);
  while (holder !== null) {
    const installed = Object.getOwnPropertyDescriptor(holder, context.name)?.value;
    if (installed !== undefined && decoratedMethods.get(installed) === context) {
      const owner = context.static ? holder : (holder as { constructor?: unknown }).constructor;
      const name = (owner as { name?: unknown } | undefined)?.name;
      return typeof name === "string" ? name : undefined;
    }
    holder = Object.getPrototypeOf(holder);
  }
  // Not found (a private method, or a function moved elsewhere): the receiver's class.
  return context.static
    ? (self as { name?: string }).name
    : (self as { constructor?: { name?: string } }).constructor?.name;
}
