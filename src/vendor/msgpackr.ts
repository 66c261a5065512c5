/**
 * msgpackr, as cachet uses it. In development and tests this is the installed package (a
 * devDependency); `npm run build` replaces the compiled module with msgpackr's portable build
 * bundled into one file (`scripts/vendor.mjs`), so that the published package does not depend
 * on msgpackr and so does not pull `msgpackr-extract`, an optional native add-on with an
 * install script (npm flags it on every install; it brings nothing measurable to the sizes
 * cachet stores: see docs/architecture.md).
 */
export { addExtension, Packr } from "msgpackr";
