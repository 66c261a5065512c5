export type {
  CachedMethodDecorator,
  CachedMethodOptions,
  CacheEntryInput,
  CacheHealth,
  CacheOptions,
  Factory,
  FactoryContext,
  Resolution,
  WrapOptions,
} from "./cache.js";
export { Cache, createCache } from "./cache.js";
export type { Clock } from "./clock.js";
export { systemClock } from "./clock.js";
export type { CachedOptions } from "./decorators.js";
export { cached } from "./decorators.js";
export type { Duration } from "./duration.js";
export { toMs } from "./duration.js";
export type { Entry } from "./entry.js";
export { decodeEntry, encodeEntry } from "./entry.js";
export type { CachetErrorCode } from "./errors.js";
export {
  CachetError,
  CorruptEntryError,
  FactoryHardTimeoutError,
  InvalidOptionError,
  KeyNotSerializableError,
  MissingPeerError,
  OutdatedEntryError,
  SerializeError,
  StoreError,
  UnsupportedValueError,
} from "./errors.js";
export type {
  CacheEventListener,
  CacheEventMap,
  CacheEventName,
  HttpOutcome,
  InvalidationKind,
  StaleReason,
  Tier,
} from "./events.js";
export { namespaceOf } from "./events.js";
export type { BreakerState } from "./guard.js";
export { argsKey, digest, stableSerialize } from "./keys.js";
export type { Logger } from "./logging.js";
export type { EntryOptions } from "./options.js";
export type { Codec, Serializer, UnsupportedAt } from "./serializer.js";
export {
  jsonSerializer,
  msgpackSerializer,
  rawSerializer,
  registerCodec,
} from "./serializer.js";
export type { Store, StoreEntry } from "./store.js";
export type { HeldEntry, MemoryStoreOptions } from "./stores/memory.js";
export { MemoryStore, memoryStore } from "./stores/memory.js";
