/**
 * The time source. Wall-clock milliseconds, because entry timestamps and tag invalidation
 * times are compared across processes. Tests inject a clock they can advance.
 */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
