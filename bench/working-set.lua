-- wrk script of the working-set scenario (bench/working-set.ts): every request asks for one of
-- N distinct URLs, /posts?k=1..N, so that a cache must look each one up on its own (50
-- concurrent hits of one URL would be one coalesced store read). Arguments (after `--`):
--   N (default 1000), order: round-robin (default) or random, seed (random order only).
-- The JSON report comes from wrk-report.lua, loaded from this script's own directory.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "wrk-report.lua")

local n, order, i = 1000, "round-robin", 0
local base = "/posts?k="

function init(args)
  n = tonumber(args[1]) or n
  order = args[2] or order
  math.randomseed(tonumber(args[3]) or 1)
end

function request()
  local k
  if order == "random" then
    k = math.random(n)
  else
    i = i % n + 1
    k = i
  end
  return wrk.format("GET", base .. k)
end
