-- Leaks: many checkout/checkin and session cycles leave the process's RSS,
-- the server's Threads_connected and pool:checkedout() where they were.
--
-- make test runs short versions; make soak (SCOPED_SOAK=1) the full numbers
-- (100k checkout/checkin cycles, 10k session cycles). Under ASan and
-- valgrind (SCOPED_SLOW=1) the counts are cut and RSS is not compared: their
-- allocators keep freed memory on purpose; they check leaks their own way.
local scoped = require "scoped"
local H = require "helper"

local SOAK = os.getenv("SCOPED_SOAK") == "1"
local SLOW = os.getenv("SCOPED_SLOW") == "1"
local function n(short, long, slow)
  if SLOW then return slow end
  return SOAK and long or short
end

local page
local function rss_kb()
  if not page then
    local p = io.popen("getconf PAGESIZE")
    page = tonumber(p:read("*a")) or 4096
    p:close()
  end
  local f = io.open("/proc/self/statm")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return tonumber(s:match("^%d+%s+(%d+)")) * page / 1024
end

local function full_gc()
  collectgarbage("collect")
  collectgarbage("collect")
end

local function threads_connected()
  return tonumber(H.observer():execute("SHOW GLOBAL STATUS LIKE 'Threads_connected'"):first()[2])
end

-- Runs body(i) total times after a warm-up (a quarter as many), sampling
-- RSS (after a full collection) ten times on the way. A leak grows RSS with
-- every cycle; the allocator's high-water mark settles early. So: over the
-- second half of the cycles RSS may not grow by more than 5%, nor by more
-- than 25% over the whole run. Server threads may not grow at all.
local function flat(total, body)
  local warm = math.max(1, math.floor(total / 4))
  for i = 1, warm do body(i) end
  full_gc()
  H.sleep(0.1) -- let the server finish closing what earlier specs closed
  local base = rss_kb()
  local threads0 = threads_connected()
  local samples = {}
  local step = math.max(1, math.floor(total / 10))
  for i = 1, total do
    body(i)
    if i % step == 0 then
      full_gc()
      samples[#samples + 1] = rss_kb()
    end
  end
  full_gc()
  local last = rss_kb()
  io.write(("# %d cycles: RSS %s kB after the warm-up, then %s kB\n"):format(total, tostring(base),
    table.concat(samples, " ")))
  local t0 = os.time()
  while threads_connected() > threads0 and os.time() - t0 < 5 do H.sleep(0.05) end
  assert.is_true(threads_connected() <= threads0, "Threads_connected grew")
  if base and not SLOW then
    local mid = samples[5]
    assert.is_true(last <= mid * 1.05, ("RSS grew from %d kB to %d kB over the second half (%+.1f%%)")
      :format(mid, last, (last - mid) * 100 / mid))
    assert.is_true(last <= base * 1.25, ("RSS grew from %d kB to %d kB (%+.1f%%)")
      :format(base, last, (last - base) * 100 / base))
  end
end

describe("leaks", function()
  after_each(full_gc)

  it("checkout/checkin cycles leave RSS, Threads_connected and checkedout() flat", function()
    local e = scoped.create_engine(H.url, {pool_size = 3})
    local before = threads_connected()
    flat(n(30000, 100000, 3000), function(i)
      local c = e:connect()
      if i % 100 == 0 then c:execute("SELECT :i", {i = i}) end
      c:close()
    end)
    assert.equal(0, e.pool:checkedout())
    e:dispose()
    H.sleep(0.1)
    assert.is_true(threads_connected() <= before + 1)
  end)

  it("checkout/checkin cycles through the full path (pool_wait, events, leak detection) stay flat", function()
    local e = scoped.create_engine(H.url, {pool_size = 3, pool_wait = function() end,
      hide_parameters = true, pool_leak_threshold = 60, logger = function() end})
    scoped.event.listen(e, "checkout", function() end)
    flat(n(10000, 100000, 1000), function()
      local c = e:connect()
      c:close()
    end)
    assert.equal(0, e.pool:checkedout())
    e:dispose()
  end)

  it("session cycles (statement, commit, close; errors and rollbacks too) stay flat", function()
    local e = scoped.create_engine(H.url, {pool_size = 3})
    local Session = scoped.sessionmaker{bind = e}
    flat(n(3000, 10000, 300), function(i)
      local s = Session()
      -- aliased: a column named after the value would grow the row
      -- metatable cache (bounded at 512, but not flat)
      s:execute("SELECT :i AS i, :s AS s", {i = i, s = "some text"}):all()
      if i % 10 == 0 then
        pcall(s.execute, s, "SELEC broken")
        s:rollback()
      end
      s:commit()
      s:close()
    end)
    assert.equal(0, e.pool:checkedout())
    e:dispose()
  end)

  it("scoped_session cycles in coroutines, removed or forgotten, stay flat", function()
    local e = scoped.create_engine(H.url, {pool_size = 3, pool_timeout = 5})
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = e})
    flat(n(3000, 10000, 300), function(i)
      local co = coroutine.create(function()
        Session:execute("SELECT 1")
        if i % 2 == 0 then Session:remove() end -- the others are collected with their coroutine
      end)
      assert(coroutine.resume(co))
      -- a forgotten session goes back when the collector runs: often
      -- enough here that the pool (3 + 10 overflow) never runs dry
      if i % 6 == 0 then full_gc() end
    end)
    full_gc()
    assert.equal(0, e.pool:checkedout())
    e:dispose()
  end)
end)
