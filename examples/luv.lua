-- Non-blocking statements under luv (libuv): statements run in coroutines
-- that luv's callbacks resume; their waits overlap (README, "Concurrency").
--
--   SCOPED_DATABASE_URL=mysql://user:pass@127.0.0.1:3306/db lua5.4 examples/luv.lua
local uv = require "luv"
local scoped = require "scoped"

local url = os.getenv("SCOPED_DATABASE_URL") or os.getenv("SCOPED_TEST_URL")
assert(url, "set SCOPED_DATABASE_URL=mysql://user:pass@127.0.0.1:3306/db")

local engine = scoped.create_engine(url, scoped.nonblocking.luv{pool_size = 2, max_overflow = 0})
local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})

-- starts fn in a coroutine from the loop, as a luv server's handler would run
local function spawn(fn)
  local t = uv.new_timer()
  t:start(0, 0, function()
    t:close()
    local co = coroutine.create(fn)
    local ok, err = coroutine.resume(co)
    if not ok then error(err, 0) end
  end)
end

local t0 = uv.hrtime()
local done = 0
for i = 1, 4 do
  spawn(function()
    -- 4 units of work on a pool of 2: two wait for a connection (woken by
    -- the checkins), and the statements overlap
    Session:execute("SELECT SLEEP(0.25)")
    Session:commit()
    Session:remove()
    done = done + 1
    print(string.format("unit %d done after %.2f s", i, (uv.hrtime() - t0) / 1e9))
  end)
end
uv.run()
print(string.format("%d units of SLEEP(0.25) on 2 connections in %.2f s", done, (uv.hrtime() - t0) / 1e9))
engine:dispose()
