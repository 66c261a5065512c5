/**
 * `cachet/testing`: the store contract suite, for authors of third-party stores. Register it
 * in a test file run by `node --test` (it uses `node:test`), against a real backend:
 *
 * @example
 * import { storeContract } from "cachet/testing";
 * import { myStore } from "../src/my-store.js";
 *
 * storeContract("my-store", async () => ({ store: myStore({ url: process.env.MY_URL }) }), {
 *   capabilities: ["getMany", "setIfAbsent", "deleteIfEquals", "disconnect"],
 *   storeAt: ({ host, port }) => myStore({ url: `my://${host}:${port}`, timeout: 500 }),
 * });
 */
export type { Store } from "../store.js";
export type {
  StoreCapability,
  StoreContractOptions,
  StoreContractSetup,
  StoreEndpoint,
} from "./store-contract.js";
export { storeContract } from "./store-contract.js";
