// Small helpers shared by the remote stores that have no dependency of their own (the
// Memcached and DynamoDB stores). Nothing here imports a peer dependency.
import { InvalidOptionError } from "../errors.js";

/** A value for an error message: its type, and the value itself when short. */
export function describeValue(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object")
    return value.constructor?.name ? `a ${value.constructor.name}` : "an object";
  if (typeof value === "string")
    return `a string (${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value)})`;
  return `${typeof value} ${String(value)}`;
}

/** An error's class, message and code, for the message of the error that wraps it. */
export function causeText(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    const name = error.name && error.name !== "Error" ? error.name : "";
    const message = error.message || name || "unknown error";
    return `${name && !message.startsWith(name) ? `${name}: ` : ""}${message}${typeof code === "string" && !message.includes(code) ? ` (${code})` : ""}`;
  }
  return String(error);
}

/** `value` as a Buffer without copying; rejects anything that is not bytes. */
export function asBuffer(value: unknown, option: string): Buffer {
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  throw new InvalidOptionError(
    option,
    `expected a Uint8Array or Buffer, got ${describeValue(value)}`,
  );
}

/** A store key must be a string. */
export function checkKey(key: unknown, option: string): string {
  if (typeof key !== "string") {
    throw new InvalidOptionError(option, `expected a string, got ${describeValue(key)}`);
  }
  return key;
}

/** A TTL is a positive, finite number of milliseconds. */
export function checkTtl(ttlMs: unknown, option: string): number {
  if (typeof ttlMs !== "number" || !Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new InvalidOptionError(
      option,
      `expected a positive number of milliseconds, got ${describeValue(ttlMs)}`,
    );
  }
  return ttlMs;
}

/** A positive safe integer option (a size in bytes, a count). */
export function positiveInteger(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidOptionError(
      option,
      `expected a positive integer, got ${describeValue(value)}`,
    );
  }
  return value;
}

/** A promise that settles with `promise`, or rejects with `onTimeout()` after `ms` (unref'd). */
export function withTimeout<T>(
  promise: Promise<T>,
  ms: number,
  onTimeout: () => Error,
): Promise<T> {
  promise.catch(() => {});
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
    timer.unref();
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
