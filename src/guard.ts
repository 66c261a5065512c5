import type { Clock } from "./clock.js";
import { StoreError } from "./errors.js";
import type { Store } from "./store.js";

/** Options of the guard around a remote store. All durations in milliseconds. */
export interface GuardOptions {
  /** Longest wait for any one store call before it counts as failed. @default 50 */
  timeout: number;
  /** Consecutive failures that open the circuit. @default 5 */
  failureThreshold: number;
  /** How long the circuit stays open before one probe call is let through. @default 1000 */
  breakerCooldown: number;
}

export type BreakerState = "closed" | "open" | "half-open";

export interface GuardHooks {
  clock: Clock;
  onError(operation: string, key: string | undefined, error: StoreError): void;
  onBreaker(state: BreakerState, error?: unknown): void;
  /** Whether calls should be timed for {@link onCall} (checked once per call). */
  timed?(): boolean;
  /** A timed call finished: its duration in milliseconds and how it ended. */
  onCall?(
    operation: string,
    key: string | undefined,
    duration: number,
    outcome: "hit" | "miss" | "ok" | "error",
    error?: StoreError,
  ): void;
  /** The first failure after a healthy period: the store became unavailable. */
  onDegraded?(error: StoreError): void;
  /**
   * A call succeeded at least `breakerCooldown` after the last failure: the store is
   * available again. `since` is when it became unavailable, `failures` how many calls failed.
   */
  onRecovered?(since: number, failures: number): void;
}

const FAILED = Symbol("failed");
type Failed = typeof FAILED;

/**
 * Wraps a remote store so that it can never fail or stall a request: every call is bounded
 * by `timeout`, a failure is reported once through `onError` and then becomes a miss (reads)
 * or a no-op (writes), and after `failureThreshold` consecutive failures the circuit opens
 * and calls are skipped outright until a probe succeeds.
 */
export class GuardedStore {
  readonly store: Store;
  readonly options: GuardOptions;
  readonly #hooks: GuardHooks;
  #state: BreakerState = "closed";
  #failures = 0;
  #openUntil = 0;
  #probing = false;
  /** When the current outage began (first failure after a healthy period), if there is one. */
  #degradedSince: number | undefined;
  #lastFailureAt = 0;
  #outageFailures = 0;
  #lastError: StoreError | undefined;
  /** When a call last settled (answered or failed), `performance.now()`. */
  #lastSettledAt = 0;
  /**
   * When the latest call that timed out with nothing settling while it waited was sent
   * (`performance.now()`): the store has been silent since then, unless a call settled after.
   */
  #silentSince: number | undefined;

  constructor(store: Store, options: GuardOptions, hooks: GuardHooks) {
    this.store = store;
    this.options = options;
    this.#hooks = hooks;
  }

  get name(): string {
    return this.store.name;
  }

  get state(): BreakerState {
    return this.#state;
  }

  /**
   * When the store became unavailable, while it is (from the first failure until a call
   * succeeds `breakerCooldown` after the last one); `undefined` while it is healthy.
   */
  get degradedSince(): number | undefined {
    return this.#degradedSince;
  }

  /** The last failure, kept after recovery (for reporting). */
  get lastError(): StoreError | undefined {
    return this.#lastError;
  }

  /** The bytes under `key`; `undefined` on a miss or on any failure. */
  async get(key: string): Promise<Uint8Array | undefined> {
    const out = await this.#call("get", key, () => this.store.get(key));
    return out === FAILED ? undefined : out;
  }

  /**
   * Several keys at once (one round trip when the store supports it); `undefined` when the
   * store could not answer, so that callers can tell a failure from absent keys.
   */
  async getMany(keys: readonly string[]): Promise<Array<Uint8Array | undefined> | undefined> {
    const store = this.store;
    const out = await this.#call("getMany", keys[0], () =>
      store.getMany ? store.getMany(keys) : Promise.all(keys.map((k) => store.get(k))),
    );
    return out === FAILED ? undefined : out;
  }

  /** Resolves `true` when the write reached the store. */
  async set(key: string, value: Uint8Array, ttlMs: number): Promise<boolean> {
    const max = this.store.maxValueSize;
    if (max !== undefined && value.byteLength > max) {
      // The store would refuse it before any I/O: not a sign of a failing store, so it must not
      // count towards the breaker (a run of large values would otherwise open it).
      this.#hooks.onError(
        "set",
        key,
        new StoreError(
          this.store.name,
          "set",
          `value of ${value.byteLength} bytes exceeds the store's maxValueSize (${max} bytes); not stored`,
        ),
      );
      return false;
    }
    const out = await this.#call("set", key, () => this.store.set(key, value, ttlMs));
    return out !== FAILED;
  }

  /** Resolves `true` when the store confirmed the delete (whether or not the key existed). */
  async delete(key: string): Promise<boolean> {
    const out = await this.#call("delete", key, () => this.store.delete(key));
    return out !== FAILED;
  }

  /** `true`/`false` as the store answered; `undefined` when the store could not answer. */
  async setIfAbsent(key: string, value: Uint8Array, ttlMs: number): Promise<boolean | undefined> {
    const setIfAbsent = this.store.setIfAbsent;
    if (!setIfAbsent) return undefined;
    const out = await this.#call("setIfAbsent", key, () =>
      setIfAbsent.call(this.store, key, value, ttlMs),
    );
    return out === FAILED ? undefined : out;
  }

  async deleteIfEquals(key: string, value: Uint8Array): Promise<boolean | undefined> {
    const deleteIfEquals = this.store.deleteIfEquals;
    if (!deleteIfEquals) return undefined;
    const out = await this.#call("deleteIfEquals", key, () =>
      deleteIfEquals.call(this.store, key, value),
    );
    return out === FAILED ? undefined : out;
  }

  /** Renew a lease; `undefined` when the store has no `extendIfEquals` or could not answer. */
  async extendIfEquals(
    key: string,
    value: Uint8Array,
    ttlMs: number,
  ): Promise<boolean | undefined> {
    const extendIfEquals = this.store.extendIfEquals;
    if (!extendIfEquals) return undefined;
    const out = await this.#call("extendIfEquals", key, () =>
      extendIfEquals.call(this.store, key, value, ttlMs),
    );
    return out === FAILED ? undefined : out;
  }

  /** Take a lease (`takeLease`, else `setIfAbsent`); `undefined` when the store could not say. */
  async takeLease(key: string, value: Uint8Array, ttlMs: number): Promise<boolean | undefined> {
    const takeLease = this.store.takeLease;
    if (!takeLease) return this.setIfAbsent(key, value, ttlMs);
    const out = await this.#call("takeLease", key, () =>
      takeLease.call(this.store, key, value, ttlMs),
    );
    return out === FAILED ? undefined : out;
  }

  async #call<T>(
    operation: string,
    key: string | undefined,
    run: () => Promise<T>,
  ): Promise<T | Failed> {
    if (!this.#admit()) return FAILED;
    const hooks = this.#hooks;
    // Timed only when someone listens: off, a call costs no clock read.
    const began = hooks.timed?.() ? performance.now() : -1;
    let timer: NodeJS.Timeout | undefined;
    try {
      const started = performance.now();
      if (this.#state === "closed" && this.#stalled(started)) {
        // A call waited a whole timeout and nothing has settled since it was sent: the store
        // is frozen or black-holed. Waiting another timeout here would make a request that
        // calls the store several times (read, lease, write) wait on it several times over.
        throw new StoreError(
          this.store.name,
          operation,
          `not answering (silent for more than ${this.options.timeout} ms)`,
          { code: "E_STORE_TIMEOUT" },
        );
      }
      const pending = run();
      const settled = () => {
        this.#lastSettledAt = performance.now();
      };
      pending.then(settled, settled);
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          if (this.#lastSettledAt <= started) this.#silentSince = started;
          reject(
            new StoreError(
              this.store.name,
              operation,
              `timed out after ${this.options.timeout} ms`,
              {
                code: "E_STORE_TIMEOUT",
              },
            ),
          );
        }, this.options.timeout);
      });
      // A late answer after a timeout is dropped; its rejection must not go unhandled.
      pending.catch(() => {});
      const out = await Promise.race([pending, timeout]);
      this.#succeeded();
      if (began >= 0) {
        const outcome =
          operation !== "get" ? "ok" : out === undefined || out === null ? "miss" : "hit";
        hooks.onCall?.(operation, key, performance.now() - began, outcome);
      }
      return out;
    } catch (error) {
      const storeError =
        error instanceof StoreError
          ? error
          : new StoreError(this.store.name, operation, errorMessage(error), { cause: error });
      this.#failed(storeError);
      hooks.onError(operation, key, storeError);
      if (began >= 0) {
        hooks.onCall?.(operation, key, performance.now() - began, "error", storeError);
      }
      return FAILED;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /**
   * Whether the store is stalled: a call timed out and nothing has settled since it was sent.
   * Only for a while (a cooldown past the timeout), so that a store that never settles its
   * calls is still tried again.
   */
  #stalled(now: number): boolean {
    const since = this.#silentSince;
    if (since === undefined) return false;
    if (this.#lastSettledAt > since) {
      this.#silentSince = undefined;
      return false;
    }
    return now - since <= this.options.timeout + this.options.breakerCooldown;
  }

  /** Whether a call may go to the store now. */
  #admit(): boolean {
    if (this.#state === "closed") return true;
    if (this.#state === "open") {
      if (this.#hooks.clock.now() < this.#openUntil) return false;
      this.#setState("half-open");
    }
    // Half-open: exactly one probe at a time.
    if (this.#probing) return false;
    this.#probing = true;
    return true;
  }

  #succeeded(): void {
    this.#failures = 0;
    if (this.#state !== "closed") {
      this.#probing = false;
      this.#setState("closed");
    }
    const since = this.#degradedSince;
    // Recovered once calls succeed again a cooldown after the last failure, so that a store
    // failing one call in two is not reported as recovering on every success.
    if (
      since !== undefined &&
      this.#hooks.clock.now() - this.#lastFailureAt >= this.options.breakerCooldown
    ) {
      const failures = this.#outageFailures;
      this.#degradedSince = undefined;
      this.#outageFailures = 0;
      this.#hooks.onRecovered?.(since, failures);
    }
  }

  #failed(error: StoreError): void {
    this.#failures++;
    const now = this.#hooks.clock.now();
    this.#lastFailureAt = now;
    this.#lastError = error;
    this.#outageFailures++;
    if (this.#degradedSince === undefined) {
      this.#degradedSince = now;
      this.#hooks.onDegraded?.(error);
    }
    if (this.#state === "half-open" || this.#failures >= this.options.failureThreshold) {
      this.#probing = false;
      this.#openUntil = this.#hooks.clock.now() + this.options.breakerCooldown;
      if (this.#state !== "open") this.#setState("open", error);
    }
  }

  #setState(state: BreakerState, error?: unknown): void {
    this.#state = state;
    this.#hooks.onBreaker(state, error);
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
