-- Non-blocking statements (io_wait, scoped/nonblocking.lua, csrc/lua/lnb.c):
-- coroutines overlap their waits for the server under cqueues and under
-- luv, a pool wait yields and is woken by checkins, an abandoned statement's
-- server session is killed and its connection discarded, timeouts keep their
-- meaning, and transactions end through the same waits (checked on the
-- server by the independent client).
local scoped = require "scoped"
local core = require "scoped.core"
local nonblocking = require "scoped.nonblocking"
local H = require "helper"
local I = require "support.independent"

local has_cq, cqueues = pcall(require, "cqueues")
local has_uv, uv = pcall(require, "luv")

local now = core.monotonic
-- Bounds for the overlap checks: what the waits take when they overlap,
-- with room for a slow machine; one after the other they take 2-4 times as
-- long. Under valgrind (SCOPED_SLOW) every statement costs much more.
local SLOW = os.getenv("SCOPED_SLOW") == "1"
local function bound(s) return SLOW and s * 2 or s end

local function engine_with(opts)
  local e = scoped.create_engine(H.url, opts)
  return e
end

-- Opens n connections now, in the main thread (where nothing yields: the
-- blocking calls run), so that the timed part measures statements only
-- (opening a connection still blocks).
local function warm(engine, n)
  local held = {}
  for i = 1, n do held[i] = engine:connect() end
  for i = 1, n do held[i]:close() end
end

-- Runs the cqueues controller cq to its end with the non-blocking driver's
-- entry (raw:_nb) recording which operations it starts, through record(op),
-- whether one also had to wait depending on how fast the server answers.
local function loop_recording(cq, record)
  local methods = core.conn_methods
  local original = methods._nb
  methods._nb = function(self, op, ...)
    record(op)
    return original(self, op, ...)
  end
  local ok, fine, e = pcall(cq.loop, cq)
  methods._nb = original
  assert(ok, fine)
  assert(fine, e)
end

-- cqueues options whose io_wait, while state.on is set, waits at most
-- limit seconds and then raises: a waiter that gives up.
local function giving_up(opts, limit, message)
  local base = nonblocking.cqueues{}
  local o = nonblocking.cqueues(opts)
  local state = {on = false}
  o.io_wait = function(raw, fd, events, timeout)
    local ready = base.io_wait(raw, fd, events, state.on and limit or timeout)
    if state.on and not ready then error(message, 0) end
    return ready
  end
  return o, state
end

local function count_keys(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local obs

-- INFORMATION_SCHEMA.INNODB_TRX is a cache refreshed at most every 0.1 s:
-- poll for a transaction to show up, as trx_gone polls for one to go.
local function trx_seen(tid)
  for _ = 1, 10 do
    if obs:has_trx(tid) then return true end
    os.execute("sleep 0.15")
  end
  return false
end

setup(function()
  assert(I.available, I.why)
  obs = I.connect()
  obs:run("DROP TABLE IF EXISTS nb_t")
  obs:run("CREATE TABLE nb_t (k INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
end)
teardown(function()
  if obs then
    obs:exec("DROP TABLE IF EXISTS nb_t")
    obs:close()
  end
end)
before_each(function() obs:run("DELETE FROM nb_t") end)

describe("io_wait under cqueues", function()
  if not has_cq then
    it("needs lua-cqueues", function() error("lua-cqueues is not installed: " .. tostring(cqueues)) end)
    return
  end

  it("4 coroutines' SELECT SLEEP(0.5) overlap, and a ticker runs meanwhile", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 4})
    warm(engine, 4)
    local cq = cqueues.new()
    local got, ticks, finished = {}, 0, false
    local t0 = now()
    for i = 1, 4 do
      cq:wrap(function()
        local conn = engine:connect()
        got[i] = conn:execute("SELECT SLEEP(0.5), :i", {i = i}):fetchone()[2]
        conn:close()
      end)
    end
    cq:wrap(function()
      while count_keys(got) < 4 do
        cqueues.sleep(0.01)
        ticks = ticks + 1
      end
      finished = true
    end)
    assert(cq:loop())
    local took = now() - t0
    assert.is_true(finished)
    assert.same({1, 2, 3, 4}, got)
    assert.is_true(took < bound(0.7), ("took %.3f s (one after the other: 2 s)"):format(took))
    assert.is_true(ticks >= 20, "the ticker ran only " .. ticks .. " times")
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("8 scoped sessions on a pool of 2 (INSERT, SLEEP(0.25), COMMIT): all committed, overlapped", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 2, max_overflow = 0, pool_timeout = 10})
    warm(engine, 2)
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    local cq = cqueues.new()
    local done = 0
    local t0 = now()
    for k = 1, 8 do
      cq:wrap(function()
        Session:execute("INSERT INTO nb_t (k, v) VALUES (:k, 'cq')", {k = k})
        Session:execute("SELECT SLEEP(0.25)")
        Session:commit()
        Session:remove()
        done = done + 1
      end)
    end
    assert(cq:loop())
    local took = now() - t0
    assert.equal(8, done)
    assert.equal("8", obs:scalar("SELECT COUNT(*) FROM nb_t WHERE v = 'cq'"))
    -- 8 x 0.25 s on 2 connections: 1.0 s at best, 2.0 s one after the other
    assert.is_true(took < bound(1.4), ("took %.3f s"):format(took))
    local st = engine.pool:stats()
    assert.equal(0, st.checkedout)
    assert.is_true(st.waits > 0, "no checkout waited: the pool was never full")
    engine:dispose()
  end)

  it("a wait that raises abandons the statement: server session killed, connection discarded", function()
    local opts, give_up = giving_up({pool_size = 2}, 0.1, "gave up waiting")
    local engine = engine_with(opts)
    local cq = cqueues.new()
    local err, tid, t_raised
    cq:wrap(function()
      local conn = engine:connect()
      tid = conn:execute("SELECT CONNECTION_ID()"):scalar()
      give_up.on = true
      local ok, e = pcall(conn.execute, conn, "SELECT SLEEP(5)")
      t_raised = now()
      give_up.on = false
      assert.is_false(ok)
      err = e
      assert.is_true(conn.raw:is_invalidated())
      conn:close()
    end)
    assert(cq:loop())
    assert.equal("gave up waiting", err)
    assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
    assert.is_true(now() - t_raised < bound(1.5))
    local st = engine.pool:stats()
    assert.equal(0, st.checkedout)
    assert.equal(0, st.checkedin) -- discarded, never pooled mid-reply
    engine:dispose()
  end)

  it("a discarded connection's descriptor reused by the next one does not stall cqueues", function()
    local opts, give_up = giving_up({pool_size = 2}, 0.05, "gave up")
    local engine = engine_with(opts)
    local cq = cqueues.new()
    local fds, answer = {}, nil
    cq:wrap(function()
      local conn = engine:connect()
      fds[1] = conn:execute("SELECT 1"):scalar() and true
      give_up.on = true
      pcall(conn.execute, conn, "SELECT SLEEP(3)")
      give_up.on = false
      conn:close() -- discarded: its socket is closed
      -- the next connection most likely gets the same descriptor number
      local conn2 = engine:connect()
      answer = conn2:execute("SELECT SLEEP(0.1) + 42"):scalar()
      conn2:close()
    end)
    local t0 = now()
    local ok, e = cq:loop(5)
    assert(ok, e)
    assert.is_true(cq:empty(), "cqueues stalled: the coroutine never finished")
    assert.equal(42, answer)
    assert.is_true(now() - t0 < bound(2))
    engine:dispose()
  end)

  it("a coroutine collected while its statement waits: server session killed, connection back", function()
    -- io_wait yields to this hand-made scheduler, which then drops the coroutine
    local engine = engine_with({pool_size = 2, io_wait = function() coroutine.yield("waiting") end})
    local tid
    local co = coroutine.create(function()
      local conn = engine:connect()
      tid = conn:execute("SELECT CONNECTION_ID()"):scalar()
      conn:execute("SELECT SLEEP(5)")
    end)
    -- SELECT CONNECTION_ID() may need waits too: resume until the SLEEP waits
    local ok, what = coroutine.resume(co)
    while ok and what == "waiting" and tid == nil do ok, what = coroutine.resume(co) end
    assert.is_true(ok)
    assert.equal("waiting", what)
    assert.is_true(tid ~= nil)
    assert.equal(1, engine.pool:stats().checkedout)
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
    assert.equal(0, engine.pool:stats().checkedout)
    assert.equal(0, engine.pool:stats().checkedin)
    engine:dispose()
  end)

  it("a Session's raw path: its coroutine collected mid-statement, the server session killed, no lock left", function()
    -- a scoped_session holds the raw connection itself (engine._session_ops),
    -- with no Connection object: the same abandonment must hold there
    local engine = engine_with({pool_size = 1, max_overflow = 0, pool_timeout = 1,
      io_wait = function() coroutine.yield("waiting") end})
    assert.is_truthy(engine._session_ops)
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    local tid
    local co = coroutine.create(function()
      Session:execute("INSERT INTO nb_t (k, v) VALUES (9, 'orphan')") -- a row lock, a transaction
      tid = Session:scalar("SELECT CONNECTION_ID()") -- (connection() would leave the raw path)
      assert(Session()._raw, "the Session left the raw path")
      Session:execute("SELECT SLEEP(5)")
    end)
    local ok, what = coroutine.resume(co)
    while ok and what == "waiting" and tid == nil do ok, what = coroutine.resume(co) end
    assert.is_true(ok, tostring(what))
    assert.equal("waiting", what)
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
    assert.is_true(obs:trx_gone(tid))
    assert.equal("0", obs:scalar("SELECT COUNT(*) FROM nb_t WHERE k = 9")) -- rolled back with it
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("another coroutine using the connection meanwhile gets InvalidRequestError, not a protocol error", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 2})
    local cq = cqueues.new()
    local conn = engine:connect()
    local first, second_err
    cq:wrap(function() first = conn:execute("SELECT SLEEP(0.3) + 1"):scalar() end)
    cq:wrap(function()
      cqueues.sleep(0.05)
      local ok, e = pcall(conn.execute, conn, "SELECT 2")
      assert.is_false(ok)
      second_err = e
    end)
    assert(cq:loop())
    assert.equal(1, first)
    assert.is_true(scoped.exc.is(second_err, "InvalidRequestError"), tostring(second_err))
    assert.truthy(tostring(second_err):find("waiting for the server", 1, true), tostring(second_err))
    assert.equal(7, conn:execute("SELECT 7"):scalar()) -- and it is fine afterwards
    conn:close()
    engine:dispose()
  end)

  it("read_timeout keeps its meaning: the wait is told the time left, then 2013", function()
    local base = nonblocking.cqueues{}
    local seen = {}
    local opts = nonblocking.cqueues{pool_size = 1, connect_args = {read_timeout = 1}}
    opts.io_wait = function(raw, fd, events, timeout)
      seen[#seen + 1] = timeout or false
      return base.io_wait(raw, fd, events, timeout)
    end
    local engine = engine_with(opts)
    local cq = cqueues.new()
    local err, took
    cq:wrap(function()
      local conn = engine:connect()
      seen = {} -- the connect waited with connect_timeout: the statement's waits only
      local t0 = now()
      local ok, e = pcall(conn.execute, conn, "SELECT SLEEP(3)")
      took = now() - t0
      assert.is_false(ok)
      err = e
      conn:close()
    end)
    assert(cq:loop())
    assert.is_true(scoped.exc.is(err, "OperationalError"), tostring(err))
    assert.equal(2013, err.code)
    assert.is_true(took >= 0.9 and took < bound(2.5), ("took %.3f s"):format(took))
    local max = 0
    for _, t in ipairs(seen) do if t and t > max then max = t end end
    assert.is_true(max > 0.5 and max <= 1.0, "io_wait was told " .. tostring(max))
    assert.equal(0, engine.pool:stats().checkedin) -- a lost connection is discarded
    engine:dispose()
  end)

  it("COMMIT, ROLLBACK and the rollback on return run non-blocking (checked on the server)", function()
    -- which operations the non-blocking driver ran: whether one also had to
    -- wait depends on how fast the server answers, so the driver's own entry
    -- is what is recorded
    local ops = {}
    local engine = engine_with(nonblocking.cqueues{pool_size = 1})
    local cq = cqueues.new()
    cq:wrap(function()
      local conn = engine:connect()
      local tid = conn.raw:thread_id()
      conn:begin()
      conn:execute("INSERT INTO nb_t (k, v) VALUES (1, 'rolled')")
      assert.is_true(trx_seen(tid))
      ops = {}
      conn:rollback()
      assert.same({"rollback"}, ops)
      assert.is_true(obs:trx_gone(tid))
      conn:begin()
      conn:execute("INSERT INTO nb_t (k, v) VALUES (2, 'committed')")
      ops = {}
      conn:commit()
      assert.same({"commit"}, ops)
      -- a transaction left open: the rollback on return
      conn:execute("INSERT INTO nb_t (k, v) VALUES (3, 'returned')")
      assert.is_true(trx_seen(tid))
      ops = {}
      conn:close()
      assert.same({"rollback"}, ops)
      assert.is_true(obs:trx_gone(tid))
    end)
    loop_recording(cq, function(op) ops[#ops + 1] = op end)
    assert.same({{k = "2"}}, obs:rows("SELECT k FROM nb_t"))
    assert.equal(1, engine.pool:stats().checkedin) -- in sync: pooled again
    engine:dispose()
  end)

  it("executemany, a list of parameter sets, errors and CALL results run through it", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 1})
    local cq = cqueues.new()
    cq:wrap(function()
      local conn = engine:connect()
      local sets = {}
      for k = 1, 10 do sets[k] = {k = k, v = "m" .. k} end
      local r = conn:executemany("INSERT INTO nb_t (k, v) VALUES (:k, :v)", sets)
      assert.equal(10, r.rowcount)
      r = conn:execute("INSERT INTO nb_t (k, v) VALUES (:k, :v)", {{k = 11, v = "l"}, {k = 12, v = "l"}})
      assert.equal(2, r.rowcount)
      -- ? with a list: an IN list, not a batch
      assert.equal(3, conn:execute("SELECT COUNT(*) FROM nb_t WHERE k IN ?", {{1, 2, 3}}):scalar())
      local ok, e = pcall(conn.execute, conn, "INSERT INTO nb_t (k, v) VALUES (1, 'dup')")
      assert.is_false(ok)
      assert.is_true(scoped.exc.is(e, "IntegrityError"), tostring(e))
      assert.equal(1062, e.code)
      local res = conn:execute("SELECT 1 AS a UNION SELECT 2")
      assert.same({1, 2}, res:scalars():all())
      -- several result sets, as the blocking path reads them
      conn:execute("DROP PROCEDURE IF EXISTS nb_two_sets")
      conn:execute("CREATE PROCEDURE nb_two_sets() BEGIN SELECT 1 AS x; SELECT 'b' AS y, 2 AS z; END")
      res = conn:execute("CALL nb_two_sets()")
      assert.equal(1, res:fetchone()[1])
      assert.is_true(res:nextset())
      local row = res:fetchone()
      assert.same({"b", 2}, {row[1], row[2]})
      conn:execute("DROP PROCEDURE nb_two_sets")
      conn:commit()
      conn:close()
    end)
    assert(cq:loop())
    assert.equal("12", obs:scalar("SELECT COUNT(*) FROM nb_t"))
    engine:dispose()
  end)

  it("connects wait through io_wait: 4 to a server that never answers time out together", function()
    local socket = require "socket"
    local silent = assert(socket.bind("127.0.0.1", 0)) -- listens, never accepts or greets
    local _, port = silent:getsockname()
    local u = scoped.make_url(H.url):set({host = "127.0.0.1", port = tonumber(port)})
    local base = nonblocking.cqueues{}
    local seen = {}
    local opts = nonblocking.cqueues{pool_size = 4, connect_args = {connect_timeout = 1}}
    opts.io_wait = function(raw, fd, events, timeout)
      seen[#seen + 1] = timeout or false
      return base.io_wait(raw, fd, events, timeout)
    end
    local engine = scoped.create_engine(u, opts)
    local cq = cqueues.new()
    local errs = {}
    for i = 1, 4 do
      cq:wrap(function()
        local ok, e = pcall(engine.connect, engine)
        assert.is_false(ok)
        errs[i] = e
      end)
    end
    local t0 = now()
    assert(cq:loop())
    local took = now() - t0
    silent:close()
    for i = 1, 4 do
      assert.is_true(scoped.exc.is(errs[i], "OperationalError"), tostring(errs[i]))
    end
    assert.is_true(took < bound(1.8), ("took %.3f s (one after the other: 4 s)"):format(took))
    local max = 0
    for _, t in ipairs(seen) do if t and t > max then max = t end end
    assert.is_true(max > 0.5 and max <= 1.0, "io_wait was told " .. tostring(max))
    local st = engine.pool:stats()
    assert.equal(0, st.checkedout)
    assert.equal(0, st.open)
    assert.equal(4, st.connect_failures)
    engine:dispose()
  end)

  it("opening and pre-ping run non-blocking; a dead idle connection is replaced", function()
    local ops = {}
    local engine = engine_with(nonblocking.cqueues{pool_size = 1, pool_pre_ping = true})
    local cq = cqueues.new()
    local answer
    cq:wrap(function()
      local conn = engine:connect()
      assert.same({"open"}, ops)
      local tid = conn.raw:thread_id()
      conn:close()
      obs:exec("KILL CONNECTION " .. tid) -- the idle connection dies in the pool
      assert.is_true(H.connection_gone(tid))
      ops = {}
      conn = engine:connect()
      assert.same({"ping", "open"}, ops)
      answer = conn:execute("SELECT 40 + 2"):scalar()
      conn:close() -- (the SELECT began a transaction: a ROLLBACK on return)
      ops = {}
      conn = engine:connect() -- alive: the pre-ping answers, nothing opened
      assert.same({"ping"}, ops)
      conn:close()
    end)
    loop_recording(cq, function(op) ops[#ops + 1] = op end)
    assert.equal(42, answer)
    local st = engine.pool:stats()
    assert.equal(1, st.preping_failures)
    assert.equal(2, st.connects)
    assert.equal(0, st.checkedout)
    engine:dispose()
  end)

  it("a coroutine collected while its connect waits gives the slot back", function()
    local engine = engine_with({pool_size = 1, max_overflow = 0, pool_timeout = 0.5,
      io_wait = function() coroutine.yield("waiting") end})
    local co = coroutine.create(function() engine:connect() end)
    local ok, what = coroutine.resume(co)
    assert.is_true(ok)
    assert.equal("waiting", what)
    assert.equal(1, engine.pool:stats().checkedout)
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local st = engine.pool:stats()
    assert.equal(0, st.checkedout)
    assert.equal(0, st.open)
    -- the slot is usable again (a blocking checkout from the main thread)
    local conn = engine:connect()
    assert.equal(1, conn:execute("SELECT 1"):scalar())
    conn:close()
    engine:dispose()
  end)

  it("the server ending the session mid-statement: a disconnect error, the connection discarded", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 1})
    local cq = cqueues.new()
    local err, after
    cq:wrap(function()
      local conn = engine:connect()
      local tid = conn.raw:thread_id()
      cq:wrap(function()
        cqueues.sleep(0.2)
        obs:exec("KILL CONNECTION " .. tid)
      end)
      local ok, e = pcall(conn.execute, conn, "SELECT SLEEP(3)")
      assert.is_false(ok)
      err = e
      assert.is_true(conn.raw:is_invalidated())
      conn:rollback() -- SQLAlchemy's rule: the dead transaction is let go
      after = conn:execute("SELECT 5"):scalar() -- a new connection
      conn:close()
    end)
    assert(cq:loop())
    assert.is_true(scoped.exc.is(err, "OperationalError"), tostring(err))
    assert.is_true(err.code == 2013 or err.code == 1927 or err.code == 2006, tostring(err.code))
    assert.equal(5, after)
    local st = engine.pool:stats()
    assert.equal(0, st.checkedout)
    assert.is_true(st.invalidations >= 1)
    engine:dispose()
  end)

  it("KILL QUERY of a waiting lock: 1317, the same connection goes on", function()
    obs:run("INSERT INTO nb_t (k, v) VALUES (1, 'locked')")
    local holder = I.connect()
    holder:autocommit(false)
    holder:run("SELECT * FROM nb_t WHERE k = 1 FOR UPDATE")
    local engine = engine_with(nonblocking.cqueues{pool_size = 1})
    local cq = cqueues.new()
    local err, tid, tid_after, ticks = nil, nil, nil, 0
    cq:wrap(function()
      local conn = engine:connect()
      tid = conn.raw:thread_id()
      cq:wrap(function()
        for _ = 1, 20 do cqueues.sleep(0.01); ticks = ticks + 1 end -- the loop runs meanwhile
        obs:exec("KILL QUERY " .. tid)
      end)
      local ok, e = pcall(conn.execute, conn, "UPDATE nb_t SET v = 'mine' WHERE k = 1")
      assert.is_false(ok)
      err = e
      conn:rollback()
      tid_after = conn:execute("SELECT CONNECTION_ID()"):scalar()
      conn:close()
    end)
    local ok, e = pcall(cq.loop, cq)
    holder:rollback()
    holder:close()
    assert(ok, e)
    assert.equal(1317, err.code)
    assert.equal(20, ticks)
    assert.equal(tid, tid_after) -- not invalidated: the same session
    assert.equal(1, engine.pool:stats().checkedin)
    engine:dispose()
  end)

  it("a statement that lexes by the server's sql_mode asks it through the same waits", function()
    local engine = engine_with(nonblocking.cqueues{pool_size = 1})
    local cq = cqueues.new()
    local row1, row2
    cq:wrap(function()
      local conn = engine:connect()
      -- with backslash escapes, 'a\' is not closed and :v is inside it
      conn:execute("SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')")
      row1 = conn:execute([[SELECT 'a\' AS x, :v AS y]], {v = "q'z"}):first()
      conn:execute("SET SESSION sql_mode = REPLACE(@@SESSION.sql_mode, 'NO_BACKSLASH_ESCAPES', '')")
      row2 = conn:execute([[SELECT 'a\'' AS x, :v AS y]], {v = "q'z"}):first()
      conn:close()
    end)
    assert(cq:loop())
    assert.same({"a\\", "q'z"}, {row1[1], row1[2]})
    assert.same({"a'", "q'z"}, {row2[1], row2[2]})
    engine:dispose()
  end)

  it("pool_reset_on_return = reset_connection runs non-blocking: session state gone, set up again", function()
    local ops = {}
    local engine = engine_with(nonblocking.cqueues{pool_size = 1, pool_reset_on_return = "reset_connection",
      connect_args = {init_command = "SET @init = 7"}})
    local cq = cqueues.new()
    local tid, tid2, row
    cq:wrap(function()
      local conn = engine:connect()
      tid = conn.raw:thread_id()
      conn:execute("SET @user_var = 42, @init = 8")
      conn:execute("CREATE TEMPORARY TABLE nb_tmp (a INT)")
      ops = {}
      conn:close() -- the Connection's own transaction first (SQLAlchemy's close())
      assert.same({"rollback", "reset"}, ops)
      conn = engine:connect()
      tid2 = conn.raw:thread_id()
      row = conn:execute("SELECT @user_var, @init, @@autocommit"):first()
      local gone, e = pcall(conn.execute, conn, "SELECT COUNT(*) FROM nb_tmp")
      row[4] = not gone and e.code -- the temporary table went with the session: 1146
      conn:close()
    end)
    loop_recording(cq, function(op) ops[#ops + 1] = op end)
    assert.equal(tid, tid2) -- the same connection, its session reset
    assert.equal(scoped.null, row[1])
    assert.equal(7, row[2])
    assert.equal(0, row[3])
    assert.equal(1146, row[4])
    engine:dispose()
  end)

  describe("streaming results (stream_results)", function()
    local function rss()
      local f = assert(io.open("/proc/self/statm"))
      local pages = f:read("*n")
      pages = f:read("*n") -- the second figure: resident
      f:close()
      return pages * 4096
    end

    it("two streams read row by row overlap their waits; every read went through the driver", function()
      local ops = {}
      local engine = engine_with(nonblocking.cqueues{pool_size = 2})
      warm(engine, 2)
      local cq = cqueues.new()
      local got = {}
      local t0 = now()
      for i = 1, 2 do
        cq:wrap(function()
          local conn = engine:connect()
          local res = conn:execute("SELECT seq, SLEEP(0.05) FROM seq_1_to_6", nil, {stream_results = true})
          assert.equal(-1, res.rowcount) -- until the end is read
          local seqs = {}
          for row in res:iter() do seqs[#seqs + 1] = row[1] end
          assert.equal(6, res.rowcount)
          got[i] = seqs
          conn:close()
        end)
      end
      loop_recording(cq, function(op) ops[op] = (ops[op] or 0) + 1 end)
      local took = now() - t0
      assert.same({{1, 2, 3, 4, 5, 6}, {1, 2, 3, 4, 5, 6}}, got)
      assert.is_true(took < bound(0.5), ("took %.3f s (one after the other: 0.6 s)"):format(took))
      assert.equal(2, ops.stream)
      assert.is_true(ops.fetch >= 14, "fetches: " .. tostring(ops.fetch)) -- 6 rows + the end, twice
      engine:dispose()
    end)

    it("fetchmany, partitions, first and a stream closed early: the connection is reused", function()
      local engine = engine_with(nonblocking.cqueues{pool_size = 1})
      local cq = cqueues.new()
      cq:wrap(function()
        local conn = engine:connect()
        local r = conn:execute("SELECT seq FROM seq_1_to_20", nil, {stream_results = true, yield_per = 7})
        local sizes = {}
        for rows in r:partitions() do sizes[#sizes + 1] = #rows end
        assert.same({7, 7, 6}, sizes)
        r = conn:execute("SELECT seq FROM seq_1_to_100000", nil, {stream_results = true})
        assert.equal(1, r:fetchone()[1])
        local ten = r:fetchmany(10)
        assert.same({2, 11}, {ten[1][1], ten[10][1]})
        r:close() -- abandoned after 11 rows: the rest drained
        assert.equal(3, conn:execute("SELECT 3"):scalar())
        assert.equal(1, conn:execute("SELECT seq FROM seq_1_to_5", nil, {stream_results = true}):scalar())
        assert.equal(4, conn:execute("SELECT 4"):scalar())
        -- commit while a stream is open closes it first
        r = conn:execute("SELECT seq FROM seq_1_to_1000", nil, {stream_results = true})
        assert.equal(1, r:fetchone()[1])
        conn:commit()
        assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
        assert.equal(5, conn:execute("SELECT 5"):scalar())
        conn:close()
      end)
      assert(cq:loop())
      assert.equal(1, engine.pool:stats().checkedin)
      engine:dispose()
    end)

    it("an error the server sends mid-stream is raised at its row; the connection goes on", function()
      local engine = engine_with(nonblocking.cqueues{pool_size = 1})
      local cq = cqueues.new()
      local seen, err = {}, nil
      cq:wrap(function()
        local c = engine:connect()
        c:execute("DROP FUNCTION IF EXISTS nb_boom")
        c:execute([[CREATE FUNCTION nb_boom(x INT) RETURNS INT DETERMINISTIC
          BEGIN
            IF x > 3 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom at four'; END IF;
            RETURN x;
          END]])
        c:commit()
        local r = c:execute("SELECT nb_boom(seq) AS v FROM seq_1_to_10", nil, {stream_results = true})
        local ok, e = pcall(function()
          for row in r:iter() do seen[#seen + 1] = row.v end
        end)
        assert.is_false(ok)
        err = e
        c:rollback()
        assert.equal(1, c:execute("SELECT 1"):scalar())
        c:execute("DROP FUNCTION nb_boom")
        c:close()
      end)
      assert(cq:loop())
      assert.same({1, 2, 3}, seen)
      assert.truthy(tostring(err):find("boom at four", 1, true), tostring(err))
      engine:dispose()
    end)

    it("a long stream in constant memory, each row seen once, the loop running meanwhile", function()
      local N = SLOW and 20000 or 100000
      local engine = engine_with(nonblocking.cqueues{pool_size = 1})
      local cq = cqueues.new()
      local n, sum, grew, ticks, done = 0, 0, nil, 0, false
      cq:wrap(function()
        local conn = engine:connect()
        collectgarbage()
        local before = rss()
        local r = conn:execute("SELECT seq FROM seq_1_to_" .. N, nil, {stream_results = true})
        for row in r:iter() do
          n = n + 1
          sum = sum + row[1]
        end
        collectgarbage()
        grew = rss() - before
        done = true
        conn:close()
      end)
      cq:wrap(function()
        while not done do cqueues.sleep(0.001); ticks = ticks + 1 end
      end)
      assert(cq:loop())
      assert.equal(N, n)
      assert.equal(N * (N + 1) / 2, sum)
      assert.is_true(grew < 20 * 1024 * 1024, ("RSS grew %.1f MiB"):format(grew / 1048576))
      assert.is_true(ticks > 0, "the ticker never ran while the rows came")
      engine:dispose()
    end)

    it("a stream opened in a coroutine and read in the main thread: blocking reads, every row", function()
      local opts = nonblocking.cqueues{pool_size = 1}
      local base = opts.io_wait
      opts.io_wait = function(...)
        -- (cqueues.poll would block the thread there: a luv or nginx wait cannot)
        assert(coroutine.isyieldable(), "io_wait called where the caller cannot yield")
        return base(...)
      end
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local conn, r
      cq:wrap(function()
        conn = engine:connect()
        -- big rows a few milliseconds apart (each flushed on its own by the
        -- server): the reads below have to wait
        r = conn:execute("SELECT seq, REPEAT('x', 40000), SLEEP(0.005) FROM seq_1_to_20", nil,
          {stream_results = true})
        assert.equal(1, r:fetchone()[1])
      end)
      assert(cq:loop())
      -- the main thread cannot yield: no io_wait, the reads block
      local rest = r:fetchall()
      assert.equal(19, #rest)
      assert.same({2, 20}, {rest[1][1], rest[19][1]})
      assert.equal(20, r.rowcount)
      assert.equal(7, conn:execute("SELECT 7"):scalar())
      conn:close()
      engine:dispose()
    end)

    it("a stream dropped unread is given back by the collector; the connection is reused", function()
      local engine = engine_with(nonblocking.cqueues{pool_size = 1})
      local cq = cqueues.new()
      cq:wrap(function()
        local conn = engine:connect()
        local r = conn:execute("SELECT seq FROM seq_1_to_1000", nil, {stream_results = true})
        r:fetchone()
        r = nil -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        assert.equal(6, conn:execute("SELECT 6"):scalar())
        conn:close()
      end)
      assert(cq:loop())
      assert.equal(1, engine.pool:stats().checkedin)
      engine:dispose()
    end)

    -- A CALL streamed: its second set comes after a wait on the server.
    -- nextset() reads that set's header: through io_wait too, the loop
    -- running meanwhile.
    local function make_procs(conn)
      conn:execute("DROP PROCEDURE IF EXISTS nb_two_sets")
      conn:execute([[CREATE PROCEDURE nb_two_sets(pause DOUBLE) BEGIN
        SELECT seq AS a FROM seq_1_to_3; DO SLEEP(pause); SELECT seq * 10 AS b FROM seq_1_to_2; END]])
      conn:execute("DROP PROCEDURE IF EXISTS nb_second_fails")
      conn:execute([[CREATE PROCEDURE nb_second_fails() BEGIN
        SELECT 1 AS a; DO SLEEP(0.3);
        SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'second set boom'; END]])
    end
    local function drop_procs()
      obs:exec("DROP PROCEDURE IF EXISTS nb_two_sets")
      obs:exec("DROP PROCEDURE IF EXISTS nb_second_fails")
    end

    -- cqueues options counting io_wait calls (waits.n), and a 10 ms ticker
    -- to run beside: returns opts, waits, ticker(state) for cq:wrap.
    local function ticking()
      local opts = nonblocking.cqueues{pool_size = 1}
      local base = opts.io_wait
      local waits = {n = 0}
      opts.io_wait = function(...)
        waits.n = waits.n + 1
        return base(...)
      end
      local function ticker(state)
        return function()
          while not state.done do cqueues.sleep(0.01); state.ticks = state.ticks + 1 end
        end
      end
      return opts, waits, ticker
    end

    it("a CALL's next set: nextset() waits for its header through io_wait, the loop running", function()
      local opts, waits, ticker = ticking()
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local state = {ticks = 0, done = false}
      local first, second, rowcount, more, after, during_ticks, during_waits
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        local r = conn:execute("CALL nb_two_sets(0.3)", nil, {stream_results = true})
        first = {r:fetchone().a}
        local t0, w0 = state.ticks, waits.n
        assert.is_true(r:nextset())
        during_ticks, during_waits = state.ticks - t0, waits.n - w0
        second = {}
        for row in r:iter() do second[#second + 1] = row.b end
        rowcount = r.rowcount
        more = r:nextset()
        assert.is_false(r:nextset()) -- past the last set: false again, as the blocking stream says
        after = conn:execute("SELECT 5"):scalar()
        assert.is_false(conn.raw:is_invalidated())
        conn:close()
        state.done = true
      end)
      cq:wrap(ticker(state))
      assert(cq:loop())
      drop_procs()
      assert.same({1}, first)
      assert.same({10, 20}, second)
      assert.equal(3, rowcount) -- the first set's, its rest dropped by nextset()
      assert.is_false(more)
      assert.equal(5, after)
      assert.is_true(during_waits > 0, "nextset() never called io_wait")
      -- blocking, the loop stands still for the 0.3 s: no tick at all
      assert.is_true(during_ticks >= 5, "ticks during nextset(): " .. during_ticks)
      assert.equal(1, engine.pool:stats().checkedin)
      engine:dispose()
    end)

    it("read to the end of a CALL's set, the next header is read by the same waits", function()
      local opts, _, ticker = ticking()
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local state = {ticks = 0, done = false}
      local sets, during_ticks = {}, nil
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        local r = conn:execute("CALL nb_two_sets(0.3)", nil, {stream_results = true})
        local t0 = state.ticks
        sets[1] = {}
        for row in r:iter() do sets[1][#sets[1] + 1] = row.a end -- its end: the header after the SLEEP
        during_ticks = state.ticks - t0
        assert.is_true(r:nextset())
        sets[2] = r:fetchall()
        assert.equal(3, r.rowcount)
        assert.is_false(r:nextset())
        assert.equal(6, conn:execute("SELECT 6"):scalar())
        conn:close()
        state.done = true
      end)
      cq:wrap(ticker(state))
      assert(cq:loop())
      drop_procs()
      assert.same({1, 2, 3}, sets[1])
      assert.same({10, 20}, {sets[2][1].b, sets[2][2].b})
      assert.is_true(during_ticks >= 5, "ticks while the first set's end was read: " .. during_ticks)
      engine:dispose()
    end)

    it("an error in a CALL's second set surfaces at nextset(); the connection goes on", function()
      local opts, _, ticker = ticking()
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local state = {ticks = 0, done = false}
      local err, during_ticks, closed_kind, after
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        local r = conn:execute("CALL nb_second_fails()", nil, {stream_results = true})
        assert.equal(1, r:fetchone().a)
        local t0 = state.ticks
        local ok, e = pcall(r.nextset, r)
        during_ticks = state.ticks - t0
        assert.is_false(ok)
        err = e
        closed_kind = H.error_of(r.fetchone, r).kind
        assert.is_false(conn.raw:is_invalidated())
        conn:rollback()
        after = conn:execute("SELECT 7"):scalar()
        conn:close()
        state.done = true
      end)
      cq:wrap(ticker(state))
      assert(cq:loop())
      drop_procs()
      assert.truthy(tostring(err):find("second set boom", 1, true), tostring(err))
      assert.equal(1644, err.code)
      assert.equal("ResourceClosedError", closed_kind)
      assert.equal(7, after)
      assert.is_true(during_ticks >= 5, "ticks during nextset(): " .. during_ticks)
      assert.equal(1, engine.pool:stats().checkedin) -- kept: in sync
      engine:dispose()
    end)

    it("a wait in nextset() that raises: server session killed, connection discarded", function()
      local opts, give_up = giving_up({pool_size = 1}, 0.1, "gave up in nextset")
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local err, tid
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        tid = conn:execute("SELECT CONNECTION_ID()"):scalar()
        local r = conn:execute("CALL nb_two_sets(5)", nil, {stream_results = true})
        assert.equal(1, r:fetchone().a)
        give_up.on = true
        local ok, e = pcall(r.nextset, r)
        give_up.on = false
        assert.is_false(ok)
        err = e
        assert.is_true(conn.raw:is_invalidated())
        conn:close()
      end)
      assert(cq:loop())
      drop_procs()
      assert.equal("gave up in nextset", err)
      assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
      local st = engine.pool:stats()
      assert.equal(0, st.checkedout)
      assert.equal(0, st.checkedin) -- discarded, never pooled mid-reply
      engine:dispose()
    end)

    it("a coroutine collected while nextset() waits: server session killed, connection back", function()
      local engine = engine_with({pool_size = 1, io_wait = function() coroutine.yield("waiting") end})
      local c0 = engine:connect() -- made here, in the main thread (blocking)
      make_procs(c0)
      c0:close()
      local tid, in_nextset
      local co = coroutine.create(function()
        local conn = engine:connect()
        tid = conn:execute("SELECT CONNECTION_ID()"):scalar()
        local r = conn:execute("CALL nb_two_sets(5)", nil, {stream_results = true})
        r:fetchone() -- (read to the set's end, the read would wait for the next header)
        in_nextset = true
        r:nextset()
        in_nextset = false
      end)
      local ok, what = coroutine.resume(co)
      while ok and what == "waiting" and not in_nextset do ok, what = coroutine.resume(co) end
      assert.is_true(ok, tostring(what))
      assert.is_true(in_nextset)
      assert.equal("waiting", what)
      assert.equal(1, engine.pool:stats().checkedout)
      co = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
      assert.equal(0, engine.pool:stats().checkedout)
      assert.equal(0, engine.pool:stats().checkedin)
      drop_procs()
      engine:dispose()
    end)

    it("commit, rollback and close drain an open stream through io_wait, the loop running", function()
      local opts, _, ticker = ticking()
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local state = {ticks = 0, done = false}
      local during, kinds, after = {}, {}, {}
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        for _, how in ipairs({"commit", "rollback", "close"}) do
          conn = conn.closed and engine:connect() or conn
          conn:execute("INSERT INTO nb_t (k, v) VALUES (?, ?)", {#during + 1, how})
          -- the second set comes 0.3 s after the first: the drain waits for it
          local r = conn:execute("CALL nb_two_sets(0.3)", nil, {stream_results = true})
          assert.equal(1, r:fetchone().a)
          local t0 = state.ticks
          conn[how](conn)
          during[#during + 1] = state.ticks - t0
          kinds[#kinds + 1] = H.error_of(r.fetchone, r).kind
          if how ~= "close" then after[#after + 1] = conn:execute("SELECT 8"):scalar() end
        end
        state.done = true
      end)
      cq:wrap(ticker(state))
      assert(cq:loop())
      drop_procs()
      for i, how in ipairs({"commit", "rollback", "close"}) do
        -- blocking, the loop stands still while the rest is read: no tick
        assert.is_true(during[i] >= 5, ("ticks during %s(): %d"):format(how, during[i]))
        assert.equal("ResourceClosedError", kinds[i])
      end
      assert.same({8, 8}, after)
      -- the drained connection is in sync: kept, and what commit ended is there
      assert.equal("commit", obs:scalar("SELECT GROUP_CONCAT(v) FROM nb_t"))
      local st = engine.pool:stats()
      assert.equal(0, st.checkedout)
      assert.equal(1, st.checkedin)
      engine:dispose()
    end)

    it("a wait that raises while commit drains a stream: the error goes on, the connection discarded", function()
      local opts, give_up = giving_up({pool_size = 1}, 0.1, "gave up draining")
      local engine = engine_with(opts)
      local cq = cqueues.new()
      local err, tid, pending_kind
      cq:wrap(function()
        local conn = engine:connect()
        make_procs(conn)
        tid = conn:execute("SELECT CONNECTION_ID()"):scalar()
        local r = conn:execute("CALL nb_two_sets(5)", nil, {stream_results = true})
        assert.equal(1, r:fetchone().a)
        give_up.on = true
        local ok, e = pcall(conn.commit, conn)
        give_up.on = false
        assert.is_false(ok)
        err = e
        assert.is_true(conn.raw:is_invalidated())
        pending_kind = H.error_of(conn.execute, conn, "SELECT 1").kind
        conn:close()
      end)
      assert(cq:loop())
      drop_procs()
      assert.equal("gave up draining", err)
      assert.equal("PendingRollbackError", pending_kind)
      assert.is_true(H.connection_gone(tid, 1), "the server still runs the abandoned session")
      local st = engine.pool:stats()
      assert.equal(0, st.checkedout)
      assert.equal(0, st.checkedin)
      engine:dispose()
    end)
  end)

  it("where the coroutine cannot yield (the main thread) the blocking call runs", function()
    local engine = engine_with({pool_size = 1, io_wait = function() error("io_wait called in the main thread") end})
    local conn = engine:connect()
    assert.equal(3, conn:execute("SELECT SLEEP(0.01) + 3"):scalar())
    conn:execute("INSERT INTO nb_t (k, v) VALUES (5, 'main')")
    conn:commit()
    conn:close()
    assert.equal("1", obs:scalar("SELECT COUNT(*) FROM nb_t WHERE v = 'main'"))
    engine:dispose()
  end)
end)

describe("io_wait under luv", function()
  if not has_uv then
    it("needs lua-luv", function() error("lua-luv is not installed: " .. tostring(uv)) end)
    return
  end

  -- runs each function in a coroutine started from the loop; errors are kept
  local function run_all(fns)
    local errs = {}
    for i, fn in ipairs(fns) do
      local t = uv.new_timer()
      t:start(0, 0, function()
        t:close()
        local co = coroutine.create(function()
          local ok, e = pcall(fn)
          if not ok then errs[#errs + 1] = tostring(e) end
        end)
        local ok, e = coroutine.resume(co)
        if not ok then errs[#errs + 1] = "coroutine " .. i .. ": " .. tostring(e) end
      end)
    end
    uv.run()
    assert.same({}, errs)
  end

  it("4 coroutines' SELECT SLEEP(0.5) overlap", function()
    local engine = engine_with(nonblocking.luv{pool_size = 4})
    warm(engine, 4)
    local got, fns = {}, {}
    for i = 1, 4 do
      fns[i] = function()
        local conn = engine:connect()
        got[i] = conn:execute("SELECT SLEEP(0.5), :i", {i = i}):fetchone()[2]
        conn:close()
      end
    end
    local t0 = now()
    run_all(fns)
    local took = now() - t0
    assert.same({1, 2, 3, 4}, got)
    assert.is_true(took < bound(0.7), ("took %.3f s (one after the other: 2 s)"):format(took))
    engine:dispose()
  end)

  it("8 scoped sessions on a pool of 2: all committed, the pool wait woken by checkins", function()
    local engine = engine_with(nonblocking.luv{pool_size = 2, max_overflow = 0, pool_timeout = 10})
    warm(engine, 2)
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    local fns = {}
    for k = 1, 8 do
      fns[k] = function()
        Session:execute("INSERT INTO nb_t (k, v) VALUES (:k, 'uv')", {k = k})
        Session:execute("SELECT SLEEP(0.25)")
        Session:commit()
        Session:remove()
      end
    end
    local t0 = now()
    run_all(fns)
    local took = now() - t0
    assert.equal("8", obs:scalar("SELECT COUNT(*) FROM nb_t WHERE v = 'uv'"))
    assert.is_true(took < bound(1.4), ("took %.3f s"):format(took))
    assert.equal(0, engine.pool:stats().checkedout)
    engine:dispose()
  end)

  it("read_timeout through the luv wait: 2013, the poll handles closed", function()
    local engine = engine_with(nonblocking.luv{pool_size = 1, connect_args = {read_timeout = 1}})
    local err
    run_all({function()
      local conn = engine:connect()
      local ok, e = pcall(conn.execute, conn, "SELECT SLEEP(3)")
      assert.is_false(ok)
      err = e
      conn:close()
    end})
    assert.equal(2013, err.code)
    -- every handle the waits made was closed: the loop has nothing left
    assert.is_false(uv.loop_alive())
    engine:dispose()
  end)
end)

describe("io_wait = false", function()
  it("is accepted (the engine waits nowhere: OpenResty's default io_wait off); true is an ArgumentError", function()
    local engine = scoped.create_engine(H.url, {pool_size = 1, io_wait = false})
    assert.is_false(engine._io_wait)
    -- inside a coroutine, where an io_wait engine would yield: the blocking call
    local co = coroutine.create(function()
      local conn = engine:connect()
      local v = conn:execute("SELECT 40 + 2"):scalar()
      conn:close()
      return v
    end)
    local ok, v = coroutine.resume(co)
    assert.is_true(ok, v)
    assert.equal(42, v)
    assert.equal("dead", coroutine.status(co))
    engine:dispose()
    local okt, err = pcall(scoped.create_engine, H.url, {io_wait = true})
    assert.is_false(okt)
    assert.equal("ArgumentError", err.kind)
    assert.matches("io_wait must be a function or false", err.message, 1, true)
  end)
end)
