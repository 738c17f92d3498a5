local scoped = require "scoped"
local H = require "helper"

local function engine(opts)
  return scoped.create_engine(H.url, opts)
end

local function kill(id)
  H.observer():execute("KILL :id", {id = id})
  -- KILL returns before the thread is gone
  for _ = 1, 100 do
    if not H.connection_alive(id) then return end
    H.sleep(0.02)
  end
end

describe("QueuePool", function()
  it("keeps at most pool_size idle and opens at most pool_size + max_overflow", function()
    local e = engine({pool_size = 2, max_overflow = 1, pool_timeout = 0.2})
    local a, b, c = e:connect(), e:connect(), e:connect()
    assert.equal("Pool size: 2  Connections in pool: 0 Current Overflow: 1 Current Checked out connections: 3",
      e.pool:status())
    local err = H.error_of(e.connect, e)
    assert.equal("TimeoutError", err.kind)
    assert.equal("QueuePool limit of size 2 overflow 1 reached, connection timed out, timeout 0.20", err.message)
    local ids = {a:scalar("SELECT CONNECTION_ID()"), b:scalar("SELECT CONNECTION_ID()"),
      c:scalar("SELECT CONNECTION_ID()")}
    a:close(); b:close(); c:close()
    -- the third went over pool_size: closed on checkin, not kept
    assert.equal(2, e.pool:checkedin())
    assert.equal(0, e.pool:overflow())
    assert.is_true(H.connection_gone(ids[3]))
    assert.is_true(H.connection_alive(ids[1]))
    e:dispose()
  end)

  it("waits up to pool_timeout, fractional, before TimeoutError", function()
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 0.3})
    local held = e:connect()
    local t0 = os.clock()
    local t0w = require("scoped.core").monotonic()
    local err = H.error_of(e.connect, e)
    assert.equal("TimeoutError", err.kind)
    local waited = require("scoped.core").monotonic() - t0w
    assert.truthy(waited >= 0.3 and waited < 0.6, "waited " .. waited .. " s for a 0.3 s pool_timeout")
    assert.truthy(os.clock() - t0 < 0.25) -- waiting, not spinning
    held:close()
    e:dispose()
  end)

  it("FIFO by default, LIFO with pool_use_lifo", function()
    for _, lifo in ipairs({false, true}) do
      local e = engine({pool_size = 3, pool_use_lifo = lifo})
      local c1, c2 = e:connect(), e:connect()
      local id1, id2 = c1:scalar("SELECT CONNECTION_ID()"), c2:scalar("SELECT CONNECTION_ID()")
      c1:close(); c2:close()
      local c = e:connect()
      assert.equal(lifo and id2 or id1, c:scalar("SELECT CONNECTION_ID()"))
      c:close()
      e:dispose()
    end
  end)

  it("pool_recycle replaces a connection older than that at checkout", function()
    local e = engine({pool_recycle = 1})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    H.sleep(1.2)
    c = e:connect()
    assert.are_not.equal(id, c:scalar("SELECT CONNECTION_ID()"))
    assert.is_true(H.connection_gone(id))
    c:close()
    e:dispose()
  end)

  it("pool_pre_ping replaces a dead connection transparently", function()
    local e = engine({pool_pre_ping = true})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    kill(id)
    c = e:connect()
    local id2 = c:scalar("SELECT CONNECTION_ID()")
    assert.are_not.equal(id, id2)
    c:close()
    e:dispose()
  end)

  it("without pre-ping a dead connection raises OperationalError with connection_invalidated, and the next checkout works", function()
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 1})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:commit()
    c:close()
    kill(id)
    c = e:connect()
    local err = H.error_of(c.execute, c, "SELECT 1")
    assert.equal("OperationalError", err.kind)
    assert.is_true(err.connection_invalidated)
    c:rollback()
    c:close()
    -- the slot was freed: the pool of one hands out a fresh connection
    assert.equal(0, e.pool:checkedout())
    c = e:connect()
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
    e:dispose()
  end)

  it("a killed connection inside a transaction must be rolled back before reuse", function()
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 1})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    kill(id)
    local err = H.error_of(c.execute, c, "SELECT 1")
    assert.is_true(err.connection_invalidated)
    err = H.error_of(c.execute, c, "SELECT 1")
    assert.equal("PendingRollbackError", err.kind)
    assert.is_true(scoped.exc.is(err, "InvalidRequestError"))
    c:rollback()
    assert.equal(2, c:scalar("SELECT 2"))
    c:close()
    e:dispose()
  end)

  it("dispose closes idle connections and those checked out when they return", function()
    local e = engine()
    local a, b = e:connect(), e:connect()
    local ida, idb = a:scalar("SELECT CONNECTION_ID()"), b:scalar("SELECT CONNECTION_ID()")
    a:close()
    e:dispose()
    assert.is_true(H.connection_gone(ida))
    assert.is_true(H.connection_alive(idb))
    b:close()
    assert.is_true(H.connection_gone(idb))
    assert.equal("Pool size: 5  Connections in pool: 0 Current Overflow: -5 Current Checked out connections: 0",
      e.pool:status())
    local c = e:connect()
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
    e:dispose()
  end)

  it("NullPool opens and closes a connection per checkout", function()
    local e = engine({poolclass = "NullPool"})
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    assert.is_true(H.connection_gone(id))
    assert.equal("NullPool", e.pool:status())
  end)

  it("isolation_level and AUTOCOMMIT", function()
    local e = engine({isolation_level = "READ COMMITTED"})
    local c = e:connect()
    assert.equal("READ-COMMITTED", c:scalar("SELECT @@tx_isolation"))
    assert.equal(0, c:scalar("SELECT @@autocommit"))
    c:close()
    e:dispose()
    e = engine({isolation_level = "AUTOCOMMIT"})
    c = e:connect()
    assert.equal(1, c:scalar("SELECT @@autocommit"))
    c:execute("CREATE TABLE IF NOT EXISTS pool_ac (id INT)")
    c:execute("DELETE FROM pool_ac")
    c:execute("INSERT INTO pool_ac VALUES (1)")
    c:close() -- no commit: autocommit made it stick
    assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM pool_ac"):scalar())
    H.observer():execute("DROP TABLE pool_ac")
    e:dispose()
  end)

  it("connect_args join the URL's parameters", function()
    local e = engine({connect_args = {init_command = "SET @scoped_marker = 42"}})
    local c = e:connect()
    assert.equal(42, c:scalar("SELECT @scoped_marker"))
    c:close()
    e:dispose()
  end)

  it("a connect error is an OperationalError, and the slot is not lost", function()
    local e = scoped.create_engine("mysql://root@127.0.0.1:1/x?connect_timeout=2",
      {pool_size = 1, max_overflow = 0, pool_timeout = 0.5})
    for _ = 1, 3 do
      local err = H.error_of(e.connect, e)
      assert.equal("OperationalError", err.kind)
      assert.equal(2002, err.code)
    end
    assert.equal(0, e.pool:checkedout())
  end)
end)

describe("events", function()
  it("connect, checkout, checkin, reset and invalidate fire", function()
    local e = engine({pool_size = 1})
    H.observer():execute("CREATE TABLE IF NOT EXISTS ev_t (id INT) ENGINE=InnoDB")
    local seen = {}
    for _, name in ipairs({"connect", "checkout", "checkin", "reset", "invalidate"}) do
      scoped.event.listen(e, name, function(raw) seen[#seen + 1] = name; assert.truthy(raw.execute) end)
    end
    scoped.event.listen(e, "connect", function(raw) raw:execute("SET @from_listener = 7") end)
    local c = e:connect()
    assert.equal(7, c:scalar("SELECT @from_listener"))
    c:execute("INSERT INTO ev_t VALUES (1)")
    c:close() -- reset (the Connection rolled back already), then checkin: SQLAlchemy's order
    c = e:connect()
    c:invalidate() -- no reset for a discarded connection; checkin all the same
    c:close()
    assert.same({"connect", "checkout", "reset", "checkin", "checkout", "invalidate", "checkin"}, seen)
    assert.equal("ArgumentError", H.error_of(scoped.event.listen, e, "nope", print).kind)
    H.observer():execute("DROP TABLE ev_t")
    e:dispose()
  end)
end)

describe("echo", function()
  it("logs statements to the logger, hiding parameters with hide_parameters", function()
    local lines, levels = {}, {}
    local e = engine({echo = true, logger = function(level, l)
      lines[#lines + 1] = l
      levels[level] = (levels[level] or 0) + 1
    end})
    local c = e:connect()
    c:execute("SELECT :v", {v = "visible-value"})
    c:close()
    assert.truthy(table.concat(lines, "\n"):find("visible-value", 1, true))
    assert.same({info = #lines}, levels) -- echo's lines are "info"
    lines = {}
    e = engine({echo = true, hide_parameters = true, logger = function(_, l) lines[#lines + 1] = l end})
    c = e:connect()
    c:execute("SELECT :v", {v = "hidden-value"})
    local err = H.error_of(c.execute, c, "SELEC :v", {v = "hidden-value"})
    c:execute("CREATE TEMPORARY TABLE echo_t (v VARCHAR(20) PRIMARY KEY)")
    c:execute("INSERT INTO echo_t VALUES (:v)", {v = "hidden-value"})
    local dup = H.error_of(c.execute, c, "INSERT INTO echo_t VALUES (:v)", {v = "hidden-value"})
    assert.equal(1062, dup.code)
    assert.falsy(tostring(dup):find("hidden-value", 1, true))
    c:close()
    assert.falsy(table.concat(lines, "\n"):find("hidden-value", 1, true))
    assert.falsy(tostring(err):find("hidden-value", 1, true))
  end)
end)

describe("pool_wait", function()
  it("serves 200 coroutines on 5 connections through a yielding wait", function()
    local e = engine({pool_size = 5, max_overflow = 0, pool_timeout = 30,
      pool_wait = function() coroutine.yield() end})
    local served, max_out, errors = 0, 0, {}
    local threads = {}
    for i = 1, 200 do
      threads[i] = coroutine.create(function()
        local c = e:connect()
        max_out = math.max(max_out, e.pool:checkedout())
        c:execute("SELECT :i", {i = i})
        coroutine.yield()
        c:close()
        served = served + 1
      end)
    end
    -- round-robin scheduler
    local alive = #threads
    while alive > 0 do
      alive = 0
      for _, co in ipairs(threads) do
        if coroutine.status(co) == "suspended" then
          local ok, err = coroutine.resume(co)
          if not ok then errors[#errors + 1] = tostring(err) end
          if coroutine.status(co) == "suspended" then alive = alive + 1 end
        end
      end
    end
    assert.same({}, errors)
    assert.equal(200, served)
    assert.is_true(max_out <= 5)
    assert.equal(0, e.pool:checkedout())
    assert.is_true(e.pool:stats().open <= 5)
    e:dispose()
  end)

  it("gets the ticket, which says when it was served (ticket:ready): the wake-one rule of scoped.ngx", function()
    local seen = {}
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 0.4,
      pool_wait = function(remaining, ticket)
        seen[#seen + 1] = {remaining = remaining, ticket = ticket, ready = ticket:ready()}
        coroutine.yield()
      end})
    local held = e:connect()
    local co = coroutine.create(function()
      local c = e:connect()
      c:close()
      return "served"
    end)
    assert.is_true(coroutine.resume(co))
    local ticket = seen[1].ticket
    assert.is_false(seen[1].ready)        -- queued, nothing free
    assert.is_false(ticket:ready())
    held:close()                          -- granted to the head ticket: this one
    assert.is_true(ticket:ready())
    local ok, v = coroutine.resume(co)
    assert.is_true(ok, v)
    assert.equal("served", v)
    assert.equal(1, #seen)
    -- a ticket past its deadline is ready too (the next try times out)
    held = e:connect()
    local co2 = coroutine.create(function() return H.error_of(e.connect, e).kind end)
    assert.is_true(coroutine.resume(co2))
    local t2 = seen[#seen].ticket
    assert.is_false(t2:ready())
    H.sleep(0.45)
    assert.is_true(t2:ready())
    local ok2, kind = coroutine.resume(co2)
    assert.is_true(ok2, kind)
    assert.equal("TimeoutError", kind)
    held:close()
    e:dispose()
  end)

  it("times out with TimeoutError when nothing is returned", function()
    local e = engine({pool_size = 1, max_overflow = 0, pool_timeout = 0.3,
      pool_wait = function() H.sleep(0.01) end})
    local held = e:connect()
    local t0 = require("scoped.core").monotonic()
    assert.equal("TimeoutError", H.error_of(e.connect, e).kind)
    local waited = require("scoped.core").monotonic() - t0
    assert.truthy(waited >= 0.3 and waited < 0.6, "waited " .. waited .. " s for a 0.3 s pool_timeout")
    held:close()
    local c = e:connect() -- the expired ticket left no trace
    c:close()
    e:dispose()
  end)
end)

describe("fork", function()
  -- lua-posix on LuaJIT (Debian has it for the 5.1 ABI only), the spec_posix
  -- helper on Lua 5.4 (spec/support/posix.lua); spec/c/test_fork_mysql.c
  -- does the same in C, and spec/fork_spec.lua forks with a connection held.
  local posix = require "support.posix"
  it("an engine used before fork works in parent and child; the parent's connection survives", function()
    local e = engine({pool_size = 2})
    local c = e:connect()
    local parent_id = c:scalar("SELECT CONNECTION_ID()")
    c:commit()
    c:close()
    io.stdout:flush()
    -- the child says how it went in a file: valgrind turns the exit status
    -- of a child that ends by _exit to 1 (the Lua memory it still holds)
    local report = os.tmpname()
    local pid = posix.fork()
    if pid == 0 then
      local ok = pcall(function()
        local cc = e:connect()
        assert(cc:scalar("SELECT 1") == 1)
        assert(cc:scalar("SELECT CONNECTION_ID()") ~= parent_id)
        cc:commit()
        cc:close()
      end)
      local f = io.open(report, "w")
      if f then f:write(ok and "ok" or "failed"); f:close() end
      posix._exit(ok and 0 or 1)
    end
    local how = posix.wait(pid)
    local f = io.open(report)
    local said = f and f:read("*a")
    if f then f:close() end
    os.remove(report)
    assert.equal("exited", how)
    assert.equal("ok", said)
    c = e:connect()
    assert.equal(parent_id, c:scalar("SELECT CONNECTION_ID()"))
    assert.is_true(H.connection_alive(parent_id))
    c:close()
    e:dispose()
  end)
end)
