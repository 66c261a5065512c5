/**
 * Every error cachet throws or emits is a `CachetError` with a stable `code`, so that callers
 * can branch on `err.code` instead of parsing messages. The original failure, when there is
 * one, is kept as `cause`.
 */
export type CachetErrorCode =
  | "E_INVALID_OPTION"
  | "E_KEY_NOT_SERIALIZABLE"
  | "E_FACTORY_HARD_TIMEOUT"
  | "E_FACTORY_ERROR"
  | "E_STORE"
  | "E_STORE_TIMEOUT"
  | "E_STORE_CIRCUIT_OPEN"
  | "E_CORRUPT_ENTRY"
  | "E_SERIALIZE"
  | "E_VALUE_UNSUPPORTED"
  | "E_PEER_MISSING";

export class CachetError extends Error {
  readonly code: CachetErrorCode;

  constructor(code: CachetErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** An option failed validation; the message names the option and what it accepts. */
export class InvalidOptionError extends CachetError {
  readonly option: string;

  constructor(option: string, message: string, options?: { cause?: unknown }) {
    super("E_INVALID_OPTION", `cachet: invalid option \`${option}\`: ${message}`, options);
    this.option = option;
  }
}

/** A `wrap`/`@cached` argument cannot be turned into a stable cache key. */
export class KeyNotSerializableError extends CachetError {
  constructor(message: string) {
    super("E_KEY_NOT_SERIALIZABLE", `cachet: cannot build a cache key: ${message}`);
  }
}

/** The factory did not settle within `hardTimeout`; its signal has been aborted. */
export class FactoryHardTimeoutError extends CachetError {
  readonly key: string;
  readonly timeoutMs: number;

  constructor(key: string, timeoutMs: number) {
    super(
      "E_FACTORY_HARD_TIMEOUT",
      `cachet: the factory for key "${key}" did not settle within hardTimeout (${timeoutMs} ms)`,
    );
    this.key = key;
    this.timeoutMs = timeoutMs;
  }
}

/** A store operation failed. The cache turns these into misses and no-ops and emits them. */
export class StoreError extends CachetError {
  readonly store: string;
  readonly operation: string;

  constructor(
    store: string,
    operation: string,
    message: string,
    options?: { cause?: unknown; code?: "E_STORE" | "E_STORE_TIMEOUT" | "E_STORE_CIRCUIT_OPEN" },
  ) {
    super(options?.code ?? "E_STORE", `cachet: ${store} store ${operation}: ${message}`, options);
    this.store = store;
    this.operation = operation;
  }
}

/** Bytes under a key are not a cachet entry (corrupt, truncated, or written by something else). */
export class CorruptEntryError extends CachetError {
  readonly key: string;

  constructor(key: string, message: string, options?: { cause?: unknown }) {
    super("E_CORRUPT_ENTRY", `cachet: entry "${key}" is unreadable: ${message}`, options);
    this.key = key;
  }
}

/**
 * An entry of the previous format, or written with another serializer than the reader's: a
 * miss, never decoded. The cache reports the first one per instance and then stays quiet.
 */
export class OutdatedEntryError extends CorruptEntryError {}

/** The serializer could not encode a value; the value is returned but not stored. */
export class SerializeError extends CachetError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("E_SERIALIZE", `cachet: cannot serialize value: ${message}`, options);
  }
}

/**
 * A value cannot be stored faithfully by the configured serializer (a function, a class
 * without a registered codec, a Date under JSON…). Refused at once, in every tier, so that a
 * hit never returns something other than what was stored. `path` points inside the value,
 * e.g. `value.users[3].createdBy`.
 */
export class UnsupportedValueError extends CachetError {
  readonly key: string | undefined;
  readonly path: string;
  readonly reason: string;
  readonly serializer: string;

  constructor(key: string | undefined, path: string, reason: string, serializer: string) {
    super(
      "E_VALUE_UNSUPPORTED",
      `cachet: cannot cache ${key === undefined ? "the value" : `the value for key "${key}"`}: ${path} is ${reason}, which the ${serializer} serializer cannot store faithfully`,
    );
    this.key = key;
    this.path = path;
    this.reason = reason;
    this.serializer = serializer;
  }
}

/**
 * An optional peer dependency the feature needs is not installed: the message names the
 * package to install (`npm install redis`).
 */
export class MissingPeerError extends CachetError {
  readonly peer: string;

  constructor(peer: string, feature: string, options?: { cause?: unknown; alternative?: string }) {
    super(
      "E_PEER_MISSING",
      `cachet: ${feature} needs the \`${peer}\` package: npm install ${peer}${options?.alternative ? ` (${options.alternative})` : ""}`,
      options,
    );
    this.peer = peer;
  }
}
