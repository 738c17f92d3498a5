-- The W3 floor for bench/profile.sh: N times, 100,000 rows built by
-- bench/w3_floor.c and every cell touched as bench/scoped_bench.lua's W3
-- touches them.
--
--   lua5.4|luajit bench/w3_floor.lua N
local w3floor = require "w3floor"
local benchlib = require "benchlib"
local build, null = w3floor.build, w3floor.null
local n = assert(tonumber(arg[1]), "usage: w3_floor.lua N")
local rows = 0
for _ = 1, n do rows = rows + benchlib.touch_w3(build(100000), null) end
print(rows)
