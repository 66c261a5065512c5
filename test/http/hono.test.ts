import { honoAdapter } from "./adapters/hono.js";
import { httpSuite } from "./suite.js";

httpSuite("Hono", honoAdapter);
