-- The README's concurrency examples run as a newcomer runs them, each in a
-- process of its own on this runtime, against the test server: they finish,
-- and their waits overlapped (what they print).
local H = require "helper"

local function run_example(path)
  local lua = os.getenv("SCOPED_LUA") or "lua5.4"
  local cmd = string.format("env LUA_PATH=%q LUA_CPATH=%q SCOPED_DATABASE_URL=%q %s %s 2>&1; echo \"exit $?\"",
    package.path, package.cpath, H.url, lua, path)
  local p = assert(io.popen(cmd))
  local out = p:read("*a")
  p:close()
  return out
end

local SLOW = os.getenv("SCOPED_SLOW") == "1"

describe("examples", function()
  it("examples/cqueues.lua: four SLEEP(0.5) overlap", function()
    local out = run_example("examples/cqueues.lua")
    assert.truthy(out:find("exit 0\n", 1, true), out)
    local took = tonumber(out:match("4 x SLEEP%(0%.5%) in ([%d.]+) s"))
    assert.truthy(took, out)
    assert.is_true(took < (SLOW and 1.4 or 0.7), out)
  end)

  it("examples/luv.lua: four units on two connections overlap", function()
    local out = run_example("examples/luv.lua")
    assert.truthy(out:find("exit 0\n", 1, true), out)
    local n, took = out:match("(%d+) units of SLEEP%(0%.25%) on 2 connections in ([%d.]+) s")
    assert.equal("4", n, out)
    assert.is_true(tonumber(took) < (SLOW and 1.6 or 0.8), out)
  end)
end)
