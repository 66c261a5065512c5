import "reflect-metadata";
import type {
  CallHandler,
  DynamicModule,
  ExecutionContext,
  InjectionToken,
  ModuleMetadata,
  NestInterceptor,
  OnModuleInit,
  OptionalFactoryDependency,
  Provider,
} from "@nestjs/common";
import { Inject } from "@nestjs/common";
import {
  APP_INTERCEPTOR,
  DiscoveryModule,
  DiscoveryService,
  HttpAdapterHost,
  MetadataScanner,
  Reflector,
} from "@nestjs/core";
import type { NextFunction, Request, RequestHandler, Response } from "express";
import type { FastifyInstance } from "fastify";
import { Observable } from "rxjs";
import type { Cache } from "../cache.js";
import { InvalidOptionError } from "../errors.js";
import type { HttpCache, HttpCacheOptions, RouteCacheOptions } from "../http/http-cache.js";
import { type CachetExpress, cachetExpress } from "./express.js";

export type { HttpCacheOptions, RouteCacheOptions } from "../http/http-cache.js";

/** The injection token of the module's `Cache`: `@Inject(CACHET) cache: Cache`, or `@InjectCache()`. */
export const CACHET = Symbol.for("cachet:cache");
/** The injection token of the HTTP cache (`HttpCache`): invalidate paths and tags through it. */
export const CACHET_HTTP = Symbol.for("cachet:http");
/** @internal The module's options. */
const CACHET_OPTIONS = Symbol.for("cachet:options");
/** @internal Where `@CacheRoute` keeps a route's options. */
export const CACHE_ROUTE_METADATA = "cachet:route";
/** Route config that `@nestjs/platform-fastify` passes to Fastify (its `@RouteConfig`). */
const FASTIFY_ROUTE_CONFIG_METADATA = "__fastify_route_config__";

/** Options of {@link CachetModule}. */
export interface CachetModuleOptions {
  /** The cache to inject (create it with `createCache`, on whatever store). */
  cache: Cache;
  /**
   * The HTTP response cache for routes marked with `@CacheRoute`: its options (all of
   * `HttpCacheOptions` but `cache`), or `false` for none.
   * @default {}
   */
  http?: (Omit<HttpCacheOptions, "cache"> & { invalidateOnUnsafe?: boolean | undefined }) | false;
  /**
   * Close the cache (its connections) when the application shuts down, so that the process can
   * exit after `app.close()`.
   * @default true
   */
  closeOnShutdown?: boolean | undefined;
}

/** Options of {@link CachetModule.forRoot}. */
export interface CachetModuleRootOptions extends CachetModuleOptions {
  /** Make `CACHET` injectable in every module without importing this one. @default false */
  isGlobal?: boolean | undefined;
}

/** Options of {@link CachetModule.forRootAsync}: a factory, as with `ConfigService`. */
export interface CachetModuleAsyncOptions extends Pick<ModuleMetadata, "imports"> {
  useFactory: (...args: never[]) => CachetModuleOptions | Promise<CachetModuleOptions>;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  isGlobal?: boolean | undefined;
}

/** Inject the module's `Cache`: `constructor(@InjectCache() private readonly cache: Cache) {}`. */
export const InjectCache = (): PropertyDecorator & ParameterDecorator => Inject(CACHET);
/** Inject the module's `HttpCache` (path and tag invalidation of cached responses). */
export const InjectHttpCache = (): PropertyDecorator & ParameterDecorator => Inject(CACHET_HTTP);

/**
 * Cache this route's responses, with the same rules as the other adapters:
 * `@CacheRoute({ ttl: "60s", tags: ["posts"], vary: ["accept-language"] })`.
 * On `@nestjs/platform-fastify` it becomes the route's `config.cache` (write it above a
 * `@RouteConfig` of the same route, so that it is merged into it).
 */
export function CacheRoute(options: RouteCacheOptions | true = true): MethodDecorator {
  if (options !== true && (options === null || typeof options !== "object")) {
    throw new InvalidOptionError("CacheRoute options", "expected true or an options object");
  }
  return (_target, _key, descriptor) => {
    const handler = descriptor.value as object;
    Reflect.defineMetadata(CACHE_ROUTE_METADATA, options, handler);
    const config = (Reflect.getMetadata(FASTIFY_ROUTE_CONFIG_METADATA, handler) ?? {}) as object;
    Reflect.defineMetadata(FASTIFY_ROUTE_CONFIG_METADATA, { ...config, cache: options }, handler);
    return descriptor;
  };
}

/** `@nestjs/cache-manager`'s `@CacheTTL(ttl)`: `@CacheRoute({ ttl })`. A number is in ms. */
export const CacheTTL = (ttl: RouteCacheOptions["ttl"]): MethodDecorator =>
  CacheRoute(ttl === undefined ? true : { ttl });

interface Installed {
  options: CachetModuleOptions;
  /** The HTTP cache runs as the Fastify plugin (platform-fastify). */
  fastify?: boolean;
  http: HttpCache | undefined;
  express: CachetExpress | undefined;
}

/**
 * The HTTP interceptor. `CachetModule` installs it globally (`APP_INTERCEPTOR`) when `http` is
 * on; it acts on the routes marked with `@CacheRoute`. On Express it runs cachet's Express
 * route middleware around the handler (hits are answered from the stored bytes, misses are
 * captured on the response); on Fastify the Fastify plugin's hooks do the work (installed by
 * the module, configured through the route config) and the interceptor lets requests through.
 */
export class CachetInterceptor implements NestInterceptor, OnModuleInit {
  readonly #reflector: Reflector;
  readonly #express: CachetExpress | undefined;
  readonly #discovery: DiscoveryService | undefined;
  readonly #fastify: boolean;
  readonly #routes = new WeakMap<object, RequestHandler>();

  constructor(
    reflector: Reflector,
    express: CachetExpress | undefined,
    discovery?: DiscoveryService | undefined,
    fastify = false,
  ) {
    this.#reflector = reflector;
    this.#express = express;
    this.#discovery = discovery;
    this.#fastify = fastify;
  }

  /**
   * Compile every `@CacheRoute` route's options when the app initializes, so that an invalid
   * option fails `app.init()`/`app.listen()` naming it, as on the other adapters, rather than
   * at the route's first request. (On Fastify the plugin does it when the route is added.)
   */
  onModuleInit(): void {
    const express = this.#express;
    if ((!express && !this.#fastify) || !this.#discovery) return;
    const scanner = new MetadataScanner();
    for (const wrapper of this.#discovery.getControllers()) {
      const prototype = wrapper.instance ? Object.getPrototypeOf(wrapper.instance) : undefined;
      if (!prototype) continue;
      for (const name of scanner.getAllMethodNames(prototype)) {
        const handler = prototype[name] as (...args: unknown[]) => unknown;
        const options = this.#reflector.get<RouteCacheOptions | true | undefined>(
          CACHE_ROUTE_METADATA,
          handler,
        );
        if (options === undefined || options === null) continue;
        if (this.#fastify) guardedOnFastify(options, handler, prototype.constructor, name);
        if (express && !this.#routes.has(handler)) this.#routes.set(handler, express(options));
      }
    }
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    const express = this.#express;
    if (!express || context.getType() !== "http") return next.handle();
    const handler = context.getHandler();
    const options = this.#reflector.get<RouteCacheOptions | true | undefined>(
      CACHE_ROUTE_METADATA,
      handler,
    );
    if (options === undefined) return next.handle();
    let middleware = this.#routes.get(handler);
    if (!middleware) {
      middleware = express(options);
      this.#routes.set(handler, middleware);
    }
    const route = middleware;
    const http = context.switchToHttp();
    const req = http.getRequest<Request>();
    const res = http.getResponse<Response>();
    return new Observable<unknown>((subscriber) => {
      let subscription: { unsubscribe(): void } | undefined;
      // A hit is answered by the middleware itself, which then never calls `next`: nothing is
      // emitted, and Nest sends nothing more (the response is over).
      const go: NextFunction = (error?: unknown) => {
        if (error !== undefined && error !== "route" && error !== "router") {
          subscriber.error(error);
          return;
        }
        subscription = next.handle().subscribe(subscriber);
      };
      try {
        route(req, res, go);
      } catch (error) {
        subscriber.error(error);
      }
      return () => subscription?.unsubscribe();
    });
  }
}

/** Nest's metadata key for `@UseGuards` (GUARDS_METADATA in @nestjs/common/constants). */
const GUARDS_METADATA = "__guards__";

/**
 * On platform-fastify, hits are answered in Fastify's `onRequest`, before Nest's guards run: a
 * guarded `@CacheRoute` route would serve what the guard protects to requests the guard would
 * refuse, unless the route says what its responses depend on (`key`, `vary`) or that they are
 * the same for everyone (`public`). Refuse it at start-up, naming the route.
 */
function guardedOnFastify(
  options: RouteCacheOptions | true,
  handler: object,
  controller: object,
  method: string,
): void {
  const guards = [
    ...((Reflect.getMetadata(GUARDS_METADATA, controller) as unknown[] | undefined) ?? []),
    ...((Reflect.getMetadata(GUARDS_METADATA, handler) as unknown[] | undefined) ?? []),
  ];
  if (guards.length === 0) return;
  const declared =
    options !== true && (options.key !== undefined || options.vary !== undefined || options.public);
  if (declared) return;
  const name = `${(controller as { name?: string }).name ?? "controller"}.${method}`;
  throw new InvalidOptionError(
    `${name} @CacheRoute`,
    "the route has guards (@UseGuards), and on @nestjs/platform-fastify cachet answers hits before " +
      'guards run: say what the guard checks in `vary` (e.g. vary: ["x-api-key"]) or `key`, ' +
      "or `public: true` when every caller may see the same response (Authorization and session " +
      "cookies are already never shared)",
  );
}

/** Closes the cache when the application shuts down. */
class CachetLifecycle {
  readonly #installed: Installed;
  constructor(installed: Installed) {
    this.#installed = installed;
  }
  async onApplicationShutdown(): Promise<void> {
    if (this.#installed.options.closeOnShutdown === false) return;
    await this.#installed.options.cache.close();
  }
}

const INSTALLED = Symbol.for("cachet:installed");

async function install(options: CachetModuleOptions, host: HttpAdapterHost): Promise<Installed> {
  if (!options || typeof options !== "object" || !options.cache) {
    throw new InvalidOptionError("cache", "CachetModule needs a cache (createCache(...))");
  }
  if (options.http === false) return { options, http: undefined, express: undefined };
  const { invalidateOnUnsafe, ...httpOptions } = options.http ?? {};
  const adapter = host?.httpAdapter;
  const type = adapter?.getType?.();
  if (type === "fastify") {
    const { cachetFastify } = await import("./fastify.js");
    const fastify = adapter.getInstance<FastifyInstance>();
    await fastify.register(cachetFastify, {
      cache: options.cache,
      ...httpOptions,
      invalidateOnUnsafe: invalidateOnUnsafe ?? true,
      // The module closes the cache (onApplicationShutdown), once.
      closeCache: false,
    });
    return { options, http: fastify.cachet, express: undefined, fastify: true };
  }
  const express = cachetExpress({ cache: options.cache, ...httpOptions });
  if (type === "express" && invalidateOnUnsafe !== false) {
    // Before Nest's routes (registered in app.init()), so that it sees every request.
    adapter.getInstance<{ use(handler: RequestHandler): void }>().use(express.invalidator());
  }
  return { options, http: express.http, express };
}

function providers(options: Provider): Provider[] {
  return [
    options,
    {
      provide: INSTALLED,
      inject: [CACHET_OPTIONS, HttpAdapterHost],
      useFactory: install,
    },
    {
      provide: CACHET,
      inject: [INSTALLED],
      useFactory: (installed: Installed) => installed.options.cache,
    },
    {
      provide: CACHET_HTTP,
      inject: [INSTALLED],
      useFactory: (installed: Installed) => installed.http ?? null,
    },
    {
      provide: CachetLifecycle,
      inject: [INSTALLED],
      useFactory: (installed: Installed) => new CachetLifecycle(installed),
    },
    {
      provide: CachetInterceptor,
      inject: [Reflector, INSTALLED, DiscoveryService],
      useFactory: (reflector: Reflector, installed: Installed, discovery: DiscoveryService) =>
        new CachetInterceptor(reflector, installed.express, discovery, installed.fastify),
    },
    { provide: APP_INTERCEPTOR, useExisting: CachetInterceptor },
  ];
}

/**
 * The Nest module: provides the `Cache` (`CACHET`, `@InjectCache()`), the HTTP cache
 * (`CACHET_HTTP`), the interceptor for `@CacheRoute` routes, and closes the cache on shutdown.
 *
 * @example
 * CachetModule.forRoot({ cache: createCache({ ttl: "60s" }), isGlobal: true })
 */
// biome-ignore lint/complexity/noStaticOnlyClass: a Nest module is a class (forRoot/forRootAsync).
export class CachetModule {
  static forRoot(options: CachetModuleRootOptions): DynamicModule {
    const { isGlobal, ...rest } = options ?? ({} as CachetModuleRootOptions);
    return {
      module: CachetModule,
      global: isGlobal === true,
      imports: [DiscoveryModule],
      providers: providers({ provide: CACHET_OPTIONS, useValue: rest }),
      exports: [CACHET, CACHET_HTTP, CachetInterceptor],
    };
  }

  static forRootAsync(options: CachetModuleAsyncOptions): DynamicModule {
    if (!options || typeof options.useFactory !== "function") {
      throw new InvalidOptionError("useFactory", "expected a function returning the options");
    }
    return {
      module: CachetModule,
      global: options.isGlobal === true,
      imports: [DiscoveryModule, ...(options.imports ?? [])],
      providers: providers({
        provide: CACHET_OPTIONS,
        inject: options.inject ?? [],
        useFactory: options.useFactory as (...args: unknown[]) => CachetModuleOptions,
      }),
      exports: [CACHET, CACHET_HTTP, CachetInterceptor],
    };
  }
}

export type { Cache } from "../cache.js";
