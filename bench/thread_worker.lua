-- One thread of W5 (bench/threads.c runs this in each thread's own
-- lua_State): the seed's request on an engine shared by name with the other
-- threads. Returns the checkout waits and the request times, in seconds.
local sock, per = ...
local scoped = require "scoped"
local now = require("benchclock").now

local engine = scoped.create_engine("mysql://root@/scoped_test?unix_socket=" .. sock, {
  shared = "bench-w5", pool_size = 4, max_overflow = 0, pool_timeout = 60,
})
local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})

local function request()
  Session()
  Session:execute("SELECT 1"):all()
  Session:commit()
  Session:remove()
end
request() -- warm (and open this thread's share of the connections)

local waits, times = {}, {}
bench_barrier()
for i = 1, per do
  local t0 = now()
  Session()
  Session:connection()  -- the checkout: where a thread waits for a connection
  local t1 = now()
  Session:execute("SELECT 1"):all()
  Session:commit()
  Session:remove()
  waits[i] = t1 - t0
  times[i] = now() - t0
end
return waits, times
