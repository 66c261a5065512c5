import { PassThrough, type Readable } from "node:stream";

/**
 * Read a stream whole when it fits in `max` bytes. Otherwise hand back a stream that replays
 * what was read and then the rest, so the client still gets every byte; the response then
 * passes through unstored.
 */
export async function readUpTo(
  stream: Readable,
  max: number,
): Promise<{ bytes: Buffer; stream?: undefined } | { bytes?: undefined; stream: Readable }> {
  const chunks: Buffer[] = [];
  let size = 0;
  const iterator = stream[Symbol.asyncIterator]();
  for (;;) {
    const { value, done } = await iterator.next();
    if (done) return { bytes: Buffer.concat(chunks, size) };
    const chunk = Buffer.isBuffer(value) ? value : Buffer.from(value);
    chunks.push(chunk);
    size += chunk.length;
    if (size > max) {
      const replay = new PassThrough();
      for (const c of chunks) replay.write(c);
      (async () => {
        try {
          for (;;) {
            const next = await iterator.next();
            if (next.done) break;
            if (!replay.write(next.value)) await new Promise((r) => replay.once("drain", r));
          }
          replay.end();
        } catch (error) {
          replay.destroy(error as Error);
        }
      })();
      return { stream: replay };
    }
  }
}
