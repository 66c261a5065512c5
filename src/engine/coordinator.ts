import type { Factory, FactoryContext, Resolution } from "../cache.js";
import type { Entry } from "../entry.js";
import { FactoryHardTimeoutError } from "../errors.js";
import type { Tier } from "../events.js";
import type { GuardedStore } from "../guard.js";
import { isLeaseValue, newLeaseToken } from "../lease.js";
import type { EntryOptions, LeasePolicy, Policy } from "../options.js";
import { resolvePolicy } from "../options.js";
import type { HeldEntry } from "../stores/memory.js";
import type { Core, Flight } from "./core.js";
import { leaseRenewer } from "./lease-renewer.js";
import type { Tiers } from "./tiers.js";

const TIMED_OUT = Symbol("timed-out");

/**
 * Runs factories: single-flight per key in the process (the `flights` map) and, with a lease,
 * across the fleet; stale-while-revalidate, stale-if-error with backoff, soft and hard
 * timeouts, early refresh (XFetch). Reads and writes go through {@link Tiers}. This is the
 * engine the public `Cache`, the HTTP cache and the CLI drive; one per namespace, sharing the
 * core.
 */
export class Coordinator {
  readonly tiers: Tiers;
  readonly #core: Core;

  constructor(tiers: Tiers) {
    this.tiers = tiers;
    this.#core = tiers.core;
  }

  /**
   * The value under `key` or the factory's result. The L1 fast path is synchronous up to
   * the returned promise; `options` are resolved only past it (a resolved policy is used as
   * is, for `wrap`).
   */
  getOrSet<T>(key: string, factory: Factory<T>, options?: EntryOptions | Policy): Promise<T> {
    const full = this.tiers.key(key);
    const now = this.#core.clock.now();
    const held = this.#core.l1?.getHeld<T>(full, now);
    if (held !== undefined && this.tiers.isFreshHeld(held, now)) {
      this.tiers.hit(full, "l1");
      const beta = isPolicy(options)
        ? options.early
        : (options?.earlyRefresh ?? this.#core.defaults.early);
      if (beta > 0) this.#maybeRefreshEarly(full, held.entry, factory, beta, options);
      return Promise.resolve(held.entry.value);
    }
    const policy = isPolicy(options) ? options : resolvePolicy(options, this.#core.defaults);
    return this.#resolve(full, factory, policy, held).then(valueOfResolution);
  }

  /**
   * Like {@link getOrSet}, resolving to the entry and how it was found. Takes a resolved
   * policy so that callers on a hot path (the HTTP cache) resolve options once.
   */
  resolve<T>(
    key: string,
    factory: Factory<T>,
    policy: Policy,
    options?: { force?: boolean; background?: boolean },
  ): Promise<Resolution<T>> {
    const full = this.tiers.key(key);
    if (options?.background) {
      // Refresh ahead (early refresh of a fresh entry): nobody waits for this value.
      return this.#refresh(full, factory, policy, undefined, true).then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    if (options?.force) {
      // The caller wants a fresh value (a client's `no-cache`): skip the lookups, but still
      // share a flight already running for this key.
      return this.#refresh(full, factory, policy, undefined, false).then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    const held = this.#core.l1?.getHeld<T>(full);
    if (held !== undefined && this.tiers.isFreshHeld(held)) {
      this.tiers.hit(full, "l1");
      return Promise.resolve({ entry: held.entry, outcome: "hit", tier: "l1" });
    }
    return this.#resolve(full, factory, policy, held);
  }

  /**
   * XFetch (Vattani et al., "Optimal Probabilistic Cache Stampede Prevention", 2015): whether
   * a fresh entry should be refreshed ahead of its expiry now.
   */
  shouldRefreshEarly(entry: Entry, beta: number): boolean {
    return refreshEarly(entry, this.#core.clock.now(), beta);
  }

  async #resolve<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    held: HeldEntry<T> | undefined,
  ): Promise<Resolution<T>> {
    this.#core.bus?.start();
    const { clock } = this.#core;
    let now = clock.now();
    // The best candidate so far: an L1 entry that is stale but not expired.
    let candidate: Entry<T> | undefined;
    let candidateTier: Tier = "l1";
    if (held !== undefined && this.tiers.freshness(held.entry, now) !== "expired") {
      candidate = held.entry;
    }
    if (this.#core.l2) {
      const remote = await this.tiers.readL2<T>(full);
      now = clock.now();
      if (remote !== undefined) {
        const { entry, size } = remote;
        const state = this.tiers.freshness(entry, now);
        if (state === "fresh") {
          this.tiers.hold(full, entry, size);
          this.tiers.hit(full, "l2");
          return { entry, outcome: "hit", tier: "l2" };
        }
        if (state === "stale" && (!candidate || entry.createdAt > candidate.createdAt)) {
          candidate = entry;
          candidateTier = "l2";
        }
      }
    }
    return this.#produce(full, factory, policy, candidate, candidateTier);
  }

  async #produce<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    stale: Entry<T> | undefined,
    staleTier: Tier,
  ): Promise<Resolution<T>> {
    const { clock, events, backoff } = this.#core;
    const now = clock.now();
    let graceable: Entry<T> | undefined;
    if (stale !== undefined) {
      const staleSince = this.tiers.staleSince(stale);
      // A refresh of this key failed recently: serve stale without calling the factory again.
      const until = backoff.get(full);
      const backedOff = until !== undefined && now < until;
      // Stale-while-revalidate: answer now, refresh once in the background.
      // The windows travel with the entry: the writer chose them (or the response did).
      if (now < Math.min(staleSince + (stale.swr ?? policy.swr), stale.staleUntil)) {
        if (!backedOff) this.#refresh(full, factory, policy, stale, true).catch(() => {});
        this.tiers.stale(full, staleTier, backedOff ? "backoff" : "revalidating");
        return {
          entry: stale,
          outcome: "stale",
          tier: staleTier,
          reason: backedOff ? "backoff" : "revalidating",
        };
      }
      if (now < Math.min(staleSince + (stale.grace ?? policy.grace), stale.staleUntil)) {
        graceable = stale;
        if (backedOff) {
          this.tiers.stale(full, staleTier, "backoff");
          return { entry: stale, outcome: "stale", tier: staleTier, reason: "backoff" };
        }
      }
    }
    const flight = this.#refresh(full, factory, policy, graceable, false);
    if (graceable === undefined) {
      if (events.wants("miss")) events.emit("miss", { key: full });
      return flight.then((entry) => ({
        entry: entry as Entry<T>,
        outcome: "miss",
        tier: undefined,
      }));
    }
    // With a stale value to fall back on, the request is a miss only if the fresh value comes;
    // otherwise it is a stale answer: one event either way.
    try {
      const entry = policy.timeout > 0 ? await raceTimeout(flight, policy.timeout) : await flight;
      if (entry === TIMED_OUT) {
        flight.catch(() => {});
        this.tiers.stale(full, staleTier, "timeout");
        return { entry: graceable, outcome: "stale", tier: staleTier, reason: "timeout" };
      }
      if (entry === graceable) {
        // Another instance holds the lease and is refreshing: its value will land.
        this.tiers.stale(full, staleTier, "revalidating");
        return { entry: graceable, outcome: "stale", tier: staleTier, reason: "revalidating" };
      }
      if (events.wants("miss")) events.emit("miss", { key: full });
      return { entry: entry as Entry<T>, outcome: "miss", tier: undefined };
    } catch (error) {
      this.tiers.stale(full, staleTier, "error");
      return { entry: graceable, outcome: "stale", tier: staleTier, reason: "error", error };
    }
  }

  /**
   * Run the factory for `full` once, however many callers ask concurrently, store the result,
   * and resolve with the new entry. Rejections are shared by the concurrent callers only.
   */
  #refresh<T>(
    full: string,
    factory: Factory<T>,
    policy: Policy,
    stale: Entry<T> | undefined,
    background: boolean,
  ): Promise<Entry> {
    const { flights } = this.#core;
    const existing = flights.get(full);
    // A caller that waits for the value never waits on a background refresh: that refresh has
    // no deadline of its own (no client waits on it), and one that hangs would hold the key
    // for good. It leads a call of its own, which the next waiting callers share.
    if (existing && (background || !existing.background)) return existing.promise;
    const promise = this.#run(full, factory, policy, stale, background);
    const flight: Flight = { promise, background };
    flights.set(full, flight);
    const done = () => {
      if (flights.get(full) === flight) flights.delete(full);
    };
    promise.then(done, done);
    return promise;
  }

  #maybeRefreshEarly<T>(
    full: string,
    entry: Entry<T>,
    factory: Factory<T>,
    beta: number,
    options: EntryOptions | Policy | undefined,
  ): void {
    if (this.#core.flights.has(full) || !refreshEarly(entry, this.#core.clock.now(), beta)) return;
    const policy = isPolicy(options) ? options : resolvePolicy(options, this.#core.defaults);
    this.#refresh(full, factory, policy, entry, true).catch(() => {});
  }

  /**
   * Take the fleet-wide lease for `full`, or wait for its holder's value to land. Resolves with
   * the landed entry, with `busy` when another instance holds the lease and this caller has a
   * stale value to serve meanwhile (`stale`), or with the lease to hold (`undefined` when the
   * store could not say, or the wait ran out: run the factory anyway — never fail because of
   * the lease).
   */
  async #lease(
    full: string,
    lease: LeasePolicy,
    l2: GuardedStore,
    stale: boolean,
  ): Promise<{ landed: Entry } | { busy: true } | { token: Buffer | undefined; life: number }> {
    const { clock, events } = this.#core;
    const key = leaseStoreKey(full);
    const token = newLeaseToken();
    // A lease its holder renews can be short; one it cannot must outlive the factory.
    const renewable = l2.store.extendManyIfEquals || l2.store.extendIfEquals;
    const life = renewable ? lease.ttl : lease.unrenewedTtl;
    const atomic = l2.store.takeLease !== undefined;
    const deadline = clock.now() + lease.wait;
    let delay = 5;
    let waiting = false;
    let waitBegan = 0;
    let replaced = 0;
    const waited = () => performance.now() - waitBegan;
    for (;;) {
      const acquired = await l2.takeLease(key, token, life);
      if (acquired === false && !atomic && replaced < 3) {
        // A store without takeLease: a value that is not a lease (overwritten, written by
        // something else) is replaced rather than waited on, only while it is still there.
        const current = await l2.get(key);
        if (current !== undefined && !isLeaseValue(current)) {
          replaced++;
          await l2.deleteIfEquals(key, current);
          continue;
        }
      }
      if (acquired !== false) {
        if (acquired && waiting) {
          // The holder writes its value, then releases the lease: between this waiter's last
          // read and this acquisition it may have done both. A value that landed wins over a
          // second factory call; the lease just taken is given back.
          const remote = await this.tiers.readL2(full);
          if (remote && this.tiers.freshness(remote.entry, clock.now()) === "fresh") {
            void l2.deleteIfEquals(key, token);
            this.tiers.hold(full, remote.entry, remote.size);
            if (events.wants("lease")) {
              events.emit("lease", { key: full, outcome: "landed", waited: waited() });
            }
            return { landed: remote.entry };
          }
        }
        if (acquired && events.wants("lease")) {
          events.emit(
            "lease",
            waiting
              ? { key: full, outcome: "took-over", waited: waited() }
              : { key: full, outcome: "acquired" },
          );
        }
        return { token: acquired ? token : undefined, life };
      }
      // Another instance is refreshing: a caller with a stale value serves it meanwhile.
      if (stale) return { busy: true };
      if (!waiting) {
        waiting = true;
        waitBegan = performance.now();
        if (events.wants("lease")) events.emit("lease", { key: full, outcome: "waiting" });
      }
      await this.#landedOrDelay(full, delay);
      const remote = await this.tiers.readL2(full);
      if (remote && this.tiers.freshness(remote.entry, clock.now()) === "fresh") {
        this.tiers.hold(full, remote.entry, remote.size);
        if (events.wants("lease")) {
          events.emit("lease", { key: full, outcome: "landed", waited: waited() });
        }
        return { landed: remote.entry };
      }
      if (clock.now() >= deadline) {
        if (events.wants("lease")) {
          events.emit("lease", { key: full, outcome: "timed-out", waited: waited() });
        }
        return { token: undefined, life };
      }
      delay = Math.min(delay * 2, 100);
    }
  }

  /** Wait `ms`, or less when the bus says a value landed for `full`. */
  #landedOrDelay(full: string, ms: number): Promise<void> {
    const { landed } = this.#core;
    return new Promise((resolve) => {
      let waiters = landed.get(full);
      if (!waiters) {
        waiters = new Set();
        landed.set(full, waiters);
      }
      const set = waiters;
      const done = () => {
        clearTimeout(timer);
        set.delete(done);
        if (set.size === 0 && landed.get(full) === set) landed.delete(full);
        resolve();
      };
      const timer = setTimeout(done, ms);
      set.add(done);
    });
  }

  async #run<T>(
    full: string,
    factory: Factory<T>,
    basePolicy: Policy,
    stale: Entry<T> | undefined,
    background: boolean,
  ): Promise<Entry> {
    const { clock, events, backoff, tags } = this.#core;
    const startedAt = tags.stamp();
    let policy = basePolicy;
    const controller = new AbortController();
    let skipped = false;
    const context: FactoryContext<T> = {
      key: full,
      signal: controller.signal,
      stale,
      background,
      setOptions: (options) => {
        policy = resolvePolicy(options, policy, "setOptions", true);
      },
      skip: () => {
        skipped = true;
      },
    };
    const l2 = this.#core.l2;
    let token: Buffer | undefined;
    let stopHeartbeat: (() => void) | undefined;
    if (policy.lease && l2?.store.setIfAbsent) {
      const outcome = await this.#lease(full, policy.lease, l2, stale !== undefined);
      if ("landed" in outcome) return outcome.landed;
      // The holder's value will land; meanwhile this caller answers with its stale value.
      if ("busy" in outcome && stale !== undefined) return stale;
      if ("token" in outcome) {
        token = outcome.token;
        // Renewed every third of its life while the factory runs, with every other lease
        // held on this store in one call per beat (see LeaseRenewer).
        if (token && (l2.store.extendManyIfEquals || l2.store.extendIfEquals)) {
          stopHeartbeat = leaseRenewer(l2).hold(leaseStoreKey(full), token, outcome.life);
        }
      }
    }
    try {
      let value: T;
      const began = clock.now();
      // Timed on a monotonic clock, only when someone listens (metrics, traces).
      const timed = events.wants("factory") ? performance.now() : -1;
      try {
        value = await callFactory(factory, context, policy.hardTimeout, controller, full);
      } catch (error) {
        // An answer that only may not be kept (the HTTP cache's `benign` refusals) is no failure
        // of the origin: nothing to back off from.
        if (policy.graceBackoff > 0 && (error as { benign?: unknown } | null)?.benign !== true) {
          backoff.set(full, clock.now() + policy.graceBackoff);
        }
        if (events.wants("factory-error")) events.emit("factory-error", { key: full, error });
        if (timed >= 0) {
          events.emit("factory", {
            key: full,
            duration: performance.now() - timed,
            outcome: error instanceof FactoryHardTimeoutError ? "hard-timeout" : "error",
            background,
            error,
          });
        }
        throw error;
      }
      if (timed >= 0) {
        events.emit("factory", {
          key: full,
          duration: performance.now() - timed,
          outcome: "ok",
          background,
        });
      }
      backoff.delete(full);
      const entry = this.tiers.makeEntry(value, startedAt, policy, clock.now() - began);
      // A skipped result answers this flight's callers and is stored nowhere.
      if (!skipped) await this.tiers.write(full, entry);
      return entry;
    } finally {
      stopHeartbeat?.();
      // Only the owner releases: a lease that expired and was taken over is left alone.
      if (token && l2) void l2.deleteIfEquals(leaseStoreKey(full), token);
    }
  }
}

/** The store key of the fleet-wide lease for an entry key. */
export function leaseStoreKey(full: string): string {
  return `__cachet:lease:${full}`;
}

/** XFetch: refresh when `now - delta·beta·ln(U) ≥ expiry`, U uniform in (0, 1]. */
function refreshEarly(entry: Entry, now: number, beta: number): boolean {
  const delta = entry.delta ?? 0;
  if (delta <= 0 || beta <= 0) return false;
  return now - delta * beta * Math.log(1 - Math.random()) >= entry.freshUntil;
}

function isPolicy(value: EntryOptions | Policy | undefined): value is Policy {
  return value !== undefined && typeof (value as Policy).swr === "number" && "early" in value;
}

function valueOfResolution<T>(resolution: Resolution<T>): T {
  return resolution.entry.value;
}

async function raceTimeout<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<typeof TIMED_OUT>((resolve) => {
        timer = setTimeout(resolve, ms, TIMED_OUT);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function callFactory<T>(
  factory: Factory<T>,
  context: FactoryContext<T>,
  hardTimeout: number,
  controller: AbortController,
  key: string,
): Promise<T> {
  const running = (async () => factory(context))();
  if (hardTimeout <= 0) return running;
  running.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      running,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const error = new FactoryHardTimeoutError(key, hardTimeout);
          controller.abort(error);
          reject(error);
        }, hardTimeout);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
