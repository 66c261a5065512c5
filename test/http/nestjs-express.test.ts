import { nestAdapter } from "./adapters/nestjs.js";
import { httpSuite } from "./suite.js";

httpSuite("NestJS on Express", nestAdapter("express"));
