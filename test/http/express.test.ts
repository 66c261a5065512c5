import { expressAdapter } from "./adapters/express.js";
import { httpSuite } from "./suite.js";

httpSuite("Express", expressAdapter);
