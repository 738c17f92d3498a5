-- The W3 floor for bench/profile.sh: N times, 100,000 rows built by
-- bench/w3_floor.c and every cell touched as bench/scoped_bench.lua's W3
-- touches them.
--
--   lua5.4|luajit bench/w3_floor.lua N
local w3floor = require "w3floor"
local build, null = w3floor.build, w3floor.null
local n = assert(tonumber(arg[1]), "usage: w3_floor.lua N")
local isum, dsum, bytes = 0, 0.0, 0
for _ = 1, n do
  local rows = build(100000)
  for i = 1, #rows do
    local r = rows[i]
    local id, name, score, big, created, note = r[1], r[2], r[3], r[4], r[5], r[6]
    isum = isum + id + big
    dsum = dsum + score
    bytes = bytes + #name + #created
    if note ~= null then bytes = bytes + #note else bytes = bytes + 1 end
  end
end
print(isum, dsum, bytes)
