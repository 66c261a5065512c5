/**
 * apicache 1.6 on Express 5, as its README shows: `apicache.middleware("60 seconds")` on the
 * route, built-in memory store. Its Redis mode is not used: apicache reads Redis only when
 * `redisClient.connected` is true and calls `hgetall(key, callback)` (node-redis v3's API);
 * neither installed client (redis 6, ioredis 5) has `connected`, so it would never serve a hit
 * from Redis (the bench checks this property at run time and reports it).
 */
import apicache from "apicache";
import express from "express";
import type { RunningTarget, TargetConfig } from "./common.js";
import { fetchPosts, listenExpress, searchOf } from "./common.js";

export async function start(config: TargetConfig): Promise<RunningTarget> {
  const cache = apicache.middleware;
  const app = express();
  app.get("/posts", cache(`${config.ttlMs / 1000} seconds`), async (req, res) => {
    res.json(await fetchPosts(config.upstreamUrl, searchOf(req.originalUrl)));
  });
  return listenExpress(app);
}
