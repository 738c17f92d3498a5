-- Non-blocking statements under cqueues: four coroutines, each with its own
-- scoped session, wait for the server together instead of one after the
-- other (README, "Concurrency").
--
--   SCOPED_DATABASE_URL=mysql://user:pass@127.0.0.1:3306/db lua5.4 examples/cqueues.lua
local cqueues = require "cqueues"
local scoped = require "scoped"

local url = os.getenv("SCOPED_DATABASE_URL") or os.getenv("SCOPED_TEST_URL")
assert(url, "set SCOPED_DATABASE_URL=mysql://user:pass@127.0.0.1:3306/db")

-- io_wait, pool_wait and pool_wake for cqueues, added to the options
local engine = scoped.create_engine(url, scoped.nonblocking.cqueues{pool_size = 4})
local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})

local cq = cqueues.new()
local t0 = cqueues.monotime()
local ticks = 0
for i = 1, 4 do
  cq:wrap(function()
    -- the scope is the running coroutine: one session each
    local row = Session:execute("SELECT :i AS i, SLEEP(0.5) AS slept", {i = i}):first()
    Session:commit()
    Session:remove()
    print(string.format("coroutine %d done after %.2f s", row.i, cqueues.monotime() - t0))
  end)
end
cq:wrap(function() -- the loop stays free meanwhile
  while cqueues.monotime() - t0 < 0.45 do
    cqueues.sleep(0.05)
    ticks = ticks + 1
  end
end)
assert(cq:loop())
print(string.format("4 x SLEEP(0.5) in %.2f s; the ticker ran %d times meanwhile",
  cqueues.monotime() - t0, ticks))
engine:dispose()
