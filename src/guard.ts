import type { Clock } from "./clock.js";
import { StoreError } from "./errors.js";
import type { Store, StoreEntry } from "./store.js";

/** Options of the guard around a remote store. All durations in milliseconds. */
export interface GuardOptions {
  /**
   * How long the store may be silent towards a call (answer neither it nor a call made before
   * it) before the call counts as failed; see `#open`. @default 50
   */
  timeout: number;
  /** Consecutive failures that open the circuit. @default 5 */
  failureThreshold: number;
  /** How long the circuit stays open before one probe call is let through. @default 1000 */
  breakerCooldown: number;
  /**
   * The slowest transfer rate the store is assumed to sustain, in bytes per millisecond: a
   * call moving `n` bytes (and every call queued behind bytes already in flight) gets
   * `timeout + n / throughput`, so that a large value is not taken for a failing store.
   * @default 16384 (16 MiB/s)
   */
  throughput?: number | undefined;
}

/** Below this many bytes, a payload does not stretch the timeout (nor is remembered). */
export const LARGE_PAYLOAD = 64 * 1024;
/** How many keys holding large values the guard remembers the size of (for reads). */
const LARGE_KEYS_KEPT = 256;
/**
 * Renewals in flight at once on a store without `extendManyIfEquals` (one `extendIfEquals`
 * per lease): enough to keep a remote store busy, few enough that ten thousand held leases do
 * not become ten thousand calls racing one store timeout.
 */
export const RENEW_CONCURRENCY = 32;
/** {@link GuardOptions.throughput}'s default, bytes per millisecond (16 MiB/s). */
export const DEFAULT_THROUGHPUT = 16 * 1024;

export type BreakerState = "closed" | "open" | "half-open";

export interface GuardHooks {
  clock: Clock;
  /**
   * Monotonic milliseconds for timing calls (how long a store has been silent, how late a
   * timer fired). @default performance.now
   */
  now?(): number;
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

/**
 * The longest a call waits, in windows of its timeout (1 s at the default 50 ms), on a store
 * that keeps answering the calls ahead of it: a queue that moves slower than that is a
 * failing store, answering or not.
 */
export const MAX_WINDOWS = 20;
/**
 * A window whose timer fired later than this share of it says that the process could not run
 * for that long: the machine is starved (or the loop was blocked), and the store may have been
 * starved too. Its silence is not trusted; it gets that time again.
 */
export const LATE_SHARE = 0.2;
/** Calls tracked as waiting at most (the oldest is forgotten past this). */
const SETTLE_LOG = 65_536;

const FAILED = Symbol("failed");
type Failed = typeof FAILED;
const ignore = (): void => {};
/** What a call that fails before reaching the store resolves with. */
const FAILED_CALL: Promise<Failed> = Promise.resolve(FAILED);
/** What a read that fails before reaching the store resolves with: a miss. */
const MISS_CALL: Promise<undefined> = Promise.resolve(undefined);

/** A call in flight, as the guard tracks it until its caller has an answer. */
class Call {
  /** Its caller has an answer (the store's, or a failure): nothing more happens for it. */
  done = false;
  cohort: Cohort | undefined;
  constructor(
    readonly id: number,
    readonly operation: string,
    readonly key: string | undefined,
    /** When it began (for `onCall`), or `-1` when calls are not timed. */
    readonly began: number,
    /** Its payload allowance: bytes counted in flight while it runs. */
    readonly large: number,
    resolve: (value: unknown) => void,
    /** What the caller gets when the call fails. */
    readonly failed: unknown,
  ) {
    this.#resolve = resolve;
  }

  #resolve: (value: unknown) => void;

  /**
   * Answer the caller, once. The cohort keeps the call until its last call is done: the
   * caller's promise (and the value it resolved with) must not be kept with it.
   */
  answer(value: unknown): void {
    const resolve = this.#resolve;
    this.#resolve = ignore;
    resolve(value);
  }
}

/**
 * Calls made in one turn of the event loop with one time limit: they go on the wire together
 * and share one window, one timer and one judgement (a call that the judgement keeps moves to
 * a successor cohort for its next window). See `GuardedStore.#open`.
 */
class Cohort {
  readonly calls: Call[] = [];
  /** Calls not done yet: at 0, the timer is cleared. */
  open = 0;
  /** When the calls could be on the wire. */
  sentAt = 0;
  /** When the current window should end, and when its timer fired. */
  due = 0;
  firedAt = 0;
  /** How many calls had settled when the current window opened. */
  mark = 0;
  /** Windows' lengths so far. */
  waited = 0;
  /** What is left of the extra time a late timer may give (one window in all). */
  grace: number;
  timer: NodeJS.Timeout | undefined;
  turn: NodeJS.Immediate | undefined;

  constructor(readonly limit: number) {
    this.grace = limit;
  }

  add(call: Call): void {
    call.cohort = this;
    this.calls.push(call);
    this.open++;
  }

  /** A cohort for `calls`' next window, carrying what they have waited so far. */
  successor(calls: readonly Call[]): Cohort {
    const next = new Cohort(this.limit);
    next.sentAt = this.sentAt;
    next.waited = this.waited;
    next.grace = this.grace;
    for (const call of calls) next.add(call);
    return next;
  }

  stop(): void {
    clearTimeout(this.timer);
    clearImmediate(this.turn);
    this.timer = undefined;
    this.turn = undefined;
  }
}

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
  readonly #now: () => number;
  /** When a call last settled (answered or failed), on {@link #now}. */
  #lastSettledAt = 0;
  /** The number of the last call made: calls are numbered in the order they are made. */
  #calls = 0;
  /**
   * The numbers of the calls that settled, in the order they settled (a ring of the last
   * {@link SETTLE_LOG} ones), and how many settled in all: a call waiting since settle number
   * `n` sees progress ahead of it when one settled since then has a lower number (it was made
   * before, so it is ahead on the connection). Checking this costs what settled during the
   * window, usually one look (the queue answers in order), not the number of calls waiting:
   * a burst of ten thousand calls must not cost each of them a walk over the others.
   */
  readonly #settleLog = new Float64Array(SETTLE_LOG);
  /** The cohorts of calls made in this turn of the event loop, by time limit; see {@link Cohort}. */
  #forming: Map<number, Cohort> | undefined;
  #settles = 0;
  /**
   * When the latest call that timed out with nothing settling while it waited was sent
   * (on {@link #now}): the store has been silent since then, unless a call settled after.
   */
  #silentSince: number | undefined;
  // ---- payload-sized timeouts ----
  /** Bytes of large payloads in calls not settled yet (what later calls may queue behind). */
  #bytesInFlight = 0;
  /** Sizes of large values last written or read, by key: a read of one waits long enough. */
  readonly #largeKeys = new Map<string, number>();

  constructor(store: Store, options: GuardOptions, hooks: GuardHooks) {
    this.store = store;
    this.options = options;
    this.#hooks = hooks;
    this.#now = hooks.now ?? (() => performance.now());
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
  get(key: string): Promise<Uint8Array | undefined> {
    // A failure is a miss: resolved as `undefined` directly (no promise more per read).
    return this.#call(
      "get",
      key,
      () => this.store.get(key),
      this.#largeKeys.get(key),
      true,
    ) as Promise<Uint8Array | undefined>;
  }

  /**
   * Several keys at once (one round trip when the store supports it); `undefined` when the
   * store could not answer, so that callers can tell a failure from absent keys.
   */
  async getMany(keys: readonly string[]): Promise<Array<Uint8Array | undefined> | undefined> {
    const store = this.store;
    let expected = 0;
    for (const key of keys) expected += this.#largeKeys.get(key) ?? 0;
    const out = await this.#call(
      "getMany",
      keys[0],
      () => (store.getMany ? store.getMany(keys) : Promise.all(keys.map((k) => store.get(k)))),
      expected,
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
    this.#remember(key, value.byteLength);
    const out = await this.#call(
      "set",
      key,
      () => this.store.set(key, value, ttlMs),
      value.byteLength,
    );
    return out !== FAILED;
  }

  /** Resolves `true` when the store confirmed the delete (whether or not the key existed). */
  async delete(key: string): Promise<boolean> {
    this.#largeKeys.delete(key);
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

  /**
   * Renew several leases: one call when the store has `extendManyIfEquals` (the batch's bytes
   * stretch its timeout like a large value's), else `extendIfEquals` per entry, at most
   * {@link RENEW_CONCURRENCY} at a time, each a guarded call of its own. Resolves with one
   * answer per entry: `true`/`false` as the store answered, `undefined` when it could not
   * answer (a failure, a timeout, an open breaker, a store with neither method, or a batch
   * answer that is not one boolean per entry). Never rejects.
   */
  async extendManyIfEquals(entries: readonly StoreEntry[]): Promise<Array<boolean | undefined>> {
    const n = entries.length;
    if (n === 0) return [];
    const store = this.store;
    const extendMany = store.extendManyIfEquals;
    if (extendMany) {
      let bytes = 0;
      for (const entry of entries) bytes += entry.key.length + entry.value.byteLength;
      const out = await this.#call(
        "extendManyIfEquals",
        entries[0]!.key,
        () => extendMany.call(store, entries),
        bytes,
      );
      if (out === FAILED || !Array.isArray(out) || out.length !== n) {
        return new Array<undefined>(n).fill(undefined);
      }
      return out.map((renewed) => (typeof renewed === "boolean" ? renewed : undefined));
    }
    const answers = new Array<boolean | undefined>(n).fill(undefined);
    if (!store.extendIfEquals) return answers;
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const { key, value, ttlMs } = entries[i]!;
        answers[i] = await this.extendIfEquals(key, value, ttlMs);
      }
    };
    await Promise.all(Array.from({ length: Math.min(n, RENEW_CONCURRENCY) }, worker));
    return answers;
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

  // ---- batch writes (setMany / deleteMany) ---------------------------------------------------

  /**
   * Several writes in one call (one round trip when the store has `setMany`, parallel `set`s
   * otherwise). Entries over the store's `maxValueSize` are left out (reported, not counted
   * towards the breaker). Resolves `true` when the store confirmed the others.
   */
  async setMany(entries: readonly StoreEntry[]): Promise<boolean> {
    const max = this.store.maxValueSize;
    const kept: StoreEntry[] = [];
    let bytes = 0;
    for (const entry of entries) {
      const size = entry.value.byteLength;
      if (max !== undefined && size > max) {
        this.#hooks.onError(
          "setMany",
          entry.key,
          new StoreError(
            this.store.name,
            "setMany",
            `value of ${size} bytes exceeds the store's maxValueSize (${max} bytes); not stored`,
          ),
        );
        continue;
      }
      this.#remember(entry.key, size);
      bytes += size;
      kept.push(entry);
    }
    if (kept.length === 0) return entries.length === 0;
    const store = this.store;
    const out = await this.#call(
      "setMany",
      kept[0]!.key,
      () =>
        store.setMany
          ? store.setMany(kept)
          : Promise.all(kept.map((e) => store.set(e.key, e.value, e.ttlMs))).then(() => {}),
      bytes,
    );
    return out !== FAILED && kept.length === entries.length;
  }

  /** Resolves `true` when the store confirmed the deletes (whether or not the keys existed). */
  async deleteMany(keys: readonly string[]): Promise<boolean> {
    if (keys.length === 0) return true;
    for (const key of keys) this.#largeKeys.delete(key);
    const store = this.store;
    const out = await this.#call("deleteMany", keys[0], () =>
      store.deleteMany
        ? store.deleteMany(keys)
        : Promise.all(keys.map((k) => store.delete(k))).then(() => {}),
    );
    return out !== FAILED;
  }

  /** Keep the size of a large value under `key` (forget it when the value is small). */
  #remember(key: string, size: number): void {
    const keys = this.#largeKeys;
    keys.delete(key);
    if (size < LARGE_PAYLOAD) return;
    keys.set(key, size);
    if (keys.size > LARGE_KEYS_KEPT) keys.delete(keys.keys().next().value!);
  }

  /** Bytes moved by a call's answer: a read's value(s), for {@link #remember}. */
  #learn(operation: string, key: string | undefined, out: unknown): void {
    if (operation === "get" && key !== undefined && out instanceof Uint8Array)
      this.#remember(key, out.byteLength);
  }

  /**
   * Run one store call under the guard. Resolves with the store's answer, or {@link FAILED}
   * (`undefined` with `missOnFailure`; the failure reported, counted towards the breaker)
   * when it failed or timed out; never rejects. A call costs one promise, one small record
   * and a place in its turn's cohort (see {@link Cohort}); timers are per turn of the event
   * loop, not per call.
   */
  #call<T>(
    operation: string,
    key: string | undefined,
    run: () => Promise<T>,
    bytes = 0,
    missOnFailure = false,
  ): Promise<T | Failed> {
    const failed = missOnFailure ? undefined : FAILED;
    // (With missOnFailure the caller reads a failure as `undefined`: see `get`.)
    const early = (missOnFailure ? MISS_CALL : FAILED_CALL) as Promise<Failed>;
    if (!this.#admit()) return early;
    const began = this.#hooks.timed?.() ? this.#now() : -1;
    if (this.#state === "closed" && this.#stalled(this.#now())) {
      // A call waited a whole timeout and nothing has settled since it was sent: the store
      // is frozen or black-holed. Waiting another timeout here would make a request that
      // calls the store several times (read, lease, write) wait on it several times over.
      this.#fail(
        operation,
        key,
        began,
        new StoreError(
          this.store.name,
          operation,
          `not answering (silent for more than ${this.options.timeout} ms)`,
          { code: "E_STORE_TIMEOUT" },
        ),
      );
      return early;
    }
    // A large payload needs time to cross the wire, and so do calls queued behind one.
    const large = bytes >= LARGE_PAYLOAD ? bytes : 0;
    const limit =
      this.options.timeout +
      Math.ceil((this.#bytesInFlight + large) / (this.options.throughput ?? DEFAULT_THROUGHPUT));
    const id = ++this.#calls;
    let pending: Promise<T>;
    try {
      pending = run();
    } catch (error) {
      this.#settled(id);
      this.#fail(operation, key, began, this.#storeError(operation, error));
      return early;
    }
    this.#bytesInFlight += large;
    return new Promise<T | Failed>((resolve) => {
      const call = new Call(
        id,
        operation,
        key,
        began,
        large,
        resolve as (value: unknown) => void,
        failed,
      );
      this.#join(call, limit);
      // Logged when it settles, even after it timed out: until then it is still ahead of later
      // calls on the connection, and its late answer is the store answering again. A late
      // answer is dropped; a late rejection is handled here.
      pending.then(
        (value) => this.#answered(call, value),
        (error: unknown) => this.#rejected(call, error),
      );
    });
  }

  #answered(call: Call, value: unknown): void {
    this.#settled(call.id);
    this.#learn(call.operation, call.key, value);
    if (call.done) return;
    this.#finish(call);
    this.#succeeded();
    if (call.began >= 0) {
      const outcome =
        call.operation !== "get" ? "ok" : value === undefined || value === null ? "miss" : "hit";
      this.#hooks.onCall?.(call.operation, call.key, this.#now() - call.began, outcome);
    }
    call.answer(value);
  }

  #rejected(call: Call, error: unknown): void {
    this.#settled(call.id);
    if (call.done) return;
    this.#finish(call);
    this.#fail(call.operation, call.key, call.began, this.#storeError(call.operation, error));
    call.answer(call.failed);
  }

  /** The call's timeout ran out: it fails now; its answer, if one comes, is dropped. */
  #expired(call: Call, error: StoreError): void {
    this.#finish(call);
    this.#fail(call.operation, call.key, call.began, error);
    call.answer(call.failed);
  }

  /** A call is over for its caller: release its payload allowance and its cohort's timer. */
  #finish(call: Call): void {
    call.done = true;
    // A call that timed out no longer counts as in flight: a store that never answers must
    // not stretch every later call's timeout.
    this.#bytesInFlight -= call.large;
    const cohort = call.cohort;
    if (cohort !== undefined && --cohort.open === 0) cohort.stop();
  }

  /** Call `id` settled (answered or failed, in time or late): the store is moving. */
  #settled(id: number): void {
    this.#lastSettledAt = this.#now();
    this.#settleLog[this.#settles % SETTLE_LOG] = id;
    this.#settles++;
  }

  #fail(operation: string, key: string | undefined, began: number, error: StoreError): void {
    this.#failed(error);
    this.#hooks.onError(operation, key, error);
    if (began >= 0) this.#hooks.onCall?.(operation, key, this.#now() - began, "error", error);
  }

  #storeError(operation: string, error: unknown): StoreError {
    return error instanceof StoreError
      ? error
      : new StoreError(this.store.name, operation, errorMessage(error), { cause: error });
  }

  /**
   * Put `call` in the cohort of this turn of the event loop with its time limit, opening that
   * cohort's window at the end of the turn (one `setImmediate` per turn for every cohort).
   */
  #join(call: Call, limit: number): void {
    let forming = this.#forming;
    if (forming === undefined) {
      forming = this.#forming = new Map();
      setImmediate(this.#openForming);
    }
    let cohort = forming.get(limit);
    if (cohort === undefined) {
      cohort = new Cohort(limit);
      forming.set(limit, cohort);
    }
    cohort.add(call);
  }

  /** The cohorts formed in the turn that just ended: their calls can be on the wire now. */
  readonly #openForming = (): void => {
    const forming = this.#forming;
    this.#forming = undefined;
    if (forming === undefined) return;
    const now = this.#now();
    for (const cohort of forming.values()) {
      if (cohort.open === 0) continue;
      cohort.sentAt = now;
      this.#open(cohort, cohort.limit);
    }
  };

  /**
   * The timeout of a cohort's calls: a call fails when the store has been **silent towards
   * it** for a window of `limit` ms, not merely when `limit` ms have passed. What a busy
   * process does to a call's clock is not counted against the store:
   *
   * - the window opens when the call can be on the wire: clients write in the check phase of
   *   the event-loop turn the call was made in (node-redis batches its writes in a
   *   `setImmediate`), after whatever else that turn runs (a burst of requests encoding and
   *   compressing bodies takes tens of milliseconds); the calls made in one turn with one
   *   limit share that window and its timer (a cohort);
   * - when the window's timer fires, the guard yields once (`setImmediate`) before judging:
   *   timers run before I/O in each turn, so after the loop was blocked past the deadline, a
   *   reply already waiting in the socket would otherwise go unread and its call be counted as
   *   a failure of a store that had answered in a millisecond;
   * - a call still unanswered then gets another window if the calls made before it (ahead of
   *   it on the connection: Redis answers in order) were answered meanwhile, because the store
   *   is working through a queue, not failing; or if the timer fired late by more than
   *   {@link LATE_SHARE} of the window, because the process itself could not run then, so the
   *   machine is starved and the store may have been starved with it: it gets that time again,
   *   one window's worth at most in all.
   *
   * A frozen or black-holed store answers nothing, so it is judged at the end of the first
   * window, `limit` after the call went out (plus one turn of the loop), or of the second on a
   * starved machine. A store that answers but too slowly fails a call after
   * {@link MAX_WINDOWS} windows in all.
   */
  #open(cohort: Cohort, ms: number): void {
    cohort.mark = this.#settles;
    cohort.waited += ms;
    cohort.due = this.#now() + ms;
    cohort.timer = setTimeout(() => {
      cohort.timer = undefined;
      cohort.firedAt = this.#now();
      cohort.turn = setImmediate(() => {
        cohort.turn = undefined;
        this.#judge(cohort);
      });
    }, ms);
  }

  #judge(cohort: Cohort): void {
    const { limit } = cohort;
    const waiting = cohort.calls.filter((call) => !call.done);
    if (waiting.length === 0) return;
    const again: Call[] = [];
    const failing: Call[] = [];
    let late = 0;
    if (cohort.waited < limit * MAX_WINDOWS) {
      // The lowest call number settled in this window: every call made after it saw progress.
      const ahead = this.#lowestSettledSince(cohort.mark);
      for (const call of waiting) (call.id > ahead ? again : failing).push(call);
      late = Math.min(Math.ceil(cohort.firedAt - cohort.due), cohort.grace);
      if (late <= limit * LATE_SHARE) late = 0;
    } else {
      failing.push(...waiting);
    }
    if (again.length > 0) {
      const next = cohort.successor(again);
      this.#open(next, limit);
    }
    if (failing.length === 0) return;
    if (late > 0) {
      // The timer fired late: the process could not run, and the store may not have either.
      const next = cohort.successor(failing);
      next.grace -= late;
      this.#open(next, late);
      return;
    }
    if (this.#lastSettledAt <= cohort.sentAt) this.#silentSince = cohort.sentAt;
    const waited = cohort.waited;
    for (const call of failing) {
      if (call.done) continue; // settled by a hook that ran for an earlier one
      this.#expired(
        call,
        new StoreError(
          this.store.name,
          call.operation,
          waited === limit
            ? `timed out after ${limit} ms`
            : waited >= limit * MAX_WINDOWS
              ? `timed out after ${waited} ms (answering the calls ahead of it too slowly)`
              : `timed out after ${waited} ms (nothing answered in its last window)`,
          { code: "E_STORE_TIMEOUT" },
        ),
      );
    }
  }

  /**
   * The lowest number of the calls settled since settle number `since` (`Infinity` when none
   * did; `0` when more settled than the log keeps: the store has been answering a great deal).
   * A call waiting since then saw progress ahead of it when this is lower than its number (a
   * call made before it is ahead of it on the connection). It costs what settled during the
   * window, not the number of calls waiting: a burst of ten thousand calls must not cost each
   * of them a walk over the others.
   */
  #lowestSettledSince(since: number): number {
    if (this.#settles - since > SETTLE_LOG) return 0;
    let lowest = Number.POSITIVE_INFINITY;
    for (let n = since; n < this.#settles; n++) {
      const id = this.#settleLog[n % SETTLE_LOG]!;
      if (id < lowest) lowest = id;
    }
    return lowest;
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
