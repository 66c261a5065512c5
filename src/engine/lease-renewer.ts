import type { GuardedStore } from "../guard.js";
import type { StoreEntry } from "../store.js";

/**
 * Leases renewed in one store call at most: a beat holding more is split into calls of this
 * many (sent together). On Redis each call is one script over its keys, which blocks the
 * server while it runs: a thousand `GET` + `PEXPIRE` pairs take about 1.3 ms.
 */
export const RENEW_BATCH = 1_000;

/** A lease this process holds, renewed until its factory settles or it is found lost. */
class HeldLease implements StoreEntry {
  /** A renewal of it is in flight: the next beat leaves it out. */
  renewing = false;
  constructor(
    readonly key: string,
    readonly value: Buffer,
    readonly ttlMs: number,
  ) {}
}

/** The leases of one life: renewed together, every third of that life. */
class Beat {
  readonly leases = new Set<HeldLease>();
  readonly interval: number;
  timer: NodeJS.Timeout | undefined;
  constructor(readonly life: number) {
    this.interval = Math.max(1, Math.floor(life / 3));
  }
}

/**
 * Renews every lease a cache holds on its remote store with one store call per beat
 * (`extendManyIfEquals`; a store without it gets `extendIfEquals` per lease, a bounded number
 * at a time), instead of one call per lease: a burst of ten thousand cold keys holds ten
 * thousand leases, and ten thousand renewals racing one store timeout every beat were
 * themselves a stampede on the store.
 *
 * Leases of one life share one timer firing every third of it; a lease taken between two
 * beats is first renewed at the next one, sooner than a third of its life after it was taken.
 * A renewal that finds the lease gone or taken (`false`) stops renewing that lease (the
 * factory carries on: its value still lands, and the new owner's lease is left alone); one
 * the store could not answer (`undefined`: a timeout, an open breaker) is tried again at the
 * next beat. A lease whose renewal is still in flight is left out of the beats meanwhile, so
 * a slow store never has two renewals of one lease at once. The timer is unref'd and runs
 * only while some lease is held.
 */
export class LeaseRenewer {
  readonly #l2: GuardedStore;
  readonly #beats = new Map<number, Beat>();

  constructor(l2: GuardedStore) {
    this.#l2 = l2;
  }

  /**
   * Renew the lease under `key` (holding `token`, living `life` ms) every third of its life
   * until the returned function is called or a renewal finds it gone or taken.
   */
  hold(key: string, token: Buffer, life: number): () => void {
    const lease = new HeldLease(key, token, life);
    let beat = this.#beats.get(life);
    if (beat === undefined) {
      beat = new Beat(life);
      this.#beats.set(life, beat);
    }
    beat.leases.add(lease);
    if (beat.timer === undefined) this.#schedule(beat);
    const held = beat;
    return () => this.#release(held, lease);
  }

  #release(beat: Beat, lease: HeldLease): void {
    if (!beat.leases.delete(lease) || beat.leases.size > 0) return;
    clearTimeout(beat.timer);
    beat.timer = undefined;
    if (this.#beats.get(beat.life) === beat) this.#beats.delete(beat.life);
  }

  #schedule(beat: Beat): void {
    beat.timer = setTimeout(() => this.#beat(beat), beat.interval);
    beat.timer.unref();
  }

  #beat(beat: Beat): void {
    beat.timer = undefined;
    if (beat.leases.size === 0) return;
    this.#schedule(beat);
    const due: HeldLease[] = [];
    for (const lease of beat.leases) {
      if (lease.renewing) continue;
      lease.renewing = true;
      due.push(lease);
    }
    for (let i = 0; i < due.length; i += RENEW_BATCH) {
      void this.#renew(beat, due.slice(i, i + RENEW_BATCH));
    }
  }

  async #renew(beat: Beat, leases: HeldLease[]): Promise<void> {
    const answers = await this.#l2.extendManyIfEquals(leases);
    for (let i = 0; i < leases.length; i++) {
      const lease = leases[i]!;
      lease.renewing = false;
      // Gone or taken: not renewed again. `undefined`: tried again at the next beat.
      if (answers[i] === false) this.#release(beat, lease);
    }
  }
}

const renewers = new WeakMap<GuardedStore, LeaseRenewer>();

/** The renewer of the leases held on `l2`: one per guarded store, shared by its namespaces. */
export function leaseRenewer(l2: GuardedStore): LeaseRenewer {
  let renewer = renewers.get(l2);
  if (renewer === undefined) {
    renewer = new LeaseRenewer(l2);
    renewers.set(l2, renewer);
  }
  return renewer;
}
