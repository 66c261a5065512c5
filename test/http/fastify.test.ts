import { fastifyAdapter } from "./adapters/fastify.js";
import { httpSuite } from "./suite.js";

httpSuite("Fastify", fastifyAdapter);
