import { randomBytes } from "node:crypto";

/**
 * The format of a fleet-wide lease value: a magic prefix and 32 hex digits of randomness. A
 * value under a lease key that is not in this format (overwritten, written by something else)
 * is not a lease: it is taken over at once instead of being waited on.
 */
export const LEASE_MAGIC = "cachet-lease:1:";
/** The length of a lease value, in bytes. */
export const LEASE_LENGTH = LEASE_MAGIC.length + 32;

/** A new lease value: {@link LEASE_MAGIC} and 16 random bytes in hex. */
export function newLeaseToken(): Buffer {
  return Buffer.from(LEASE_MAGIC + randomBytes(16).toString("hex"), "latin1");
}

/** Whether `value` is a well-formed lease value (the magic prefix, the exact length). */
export function isLeaseValue(value: Uint8Array | undefined): boolean {
  if (value === undefined || value.byteLength !== LEASE_LENGTH) return false;
  const bytes = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (bytes.toString("latin1", 0, LEASE_MAGIC.length) !== LEASE_MAGIC) return false;
  return /^[0-9a-f]{32}$/.test(bytes.toString("latin1", LEASE_MAGIC.length));
}
