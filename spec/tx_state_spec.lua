-- Connection and transaction state after every failure (issue 16): no
-- transaction, lock or snapshot survives the end of a unit of work, and no
-- statement runs outside the transaction its caller believes in. Every
-- check of what the server holds goes through the independent client
-- (spec/support/independent.lua: LuaSQL, not the module under test).
local scoped = require "scoped"
local H = require "helper"
local independent = require "support.independent"

-- the independent client: exec (raises on an error), q (rows, by column
-- name), scalar (a string)
local I

-- Collects everything unreachable. On LuaJIT the compiled traces go first:
-- a trace can hold the last objects its loop touched (seen: the unit's
-- Session and Connection kept alive through a full collection, now and
-- then, in a whole-suite run; jit.flush() let them go).
local function gc_all()
  if rawget(_G, "jit") then jit.flush() end
  collectgarbage(); collectgarbage()
end


-- ---- what the server holds for one connection ---------------------------------

-- information_schema.innodb_trx through the independent client, polled
-- as its cache needs (spec/support/independent.lua's trx_gone).
local function trx_of(thread_id) return I.has_trx(thread_id) end
local function trx_gone(thread_id) return I.trx_gone(thread_id) end

local function mdl_of(thread_id)
  return I.q("SELECT LOCK_MODE, TABLE_NAME FROM information_schema.metadata_lock_info WHERE THREAD_ID = " ..
    thread_id)
end

-- Every row of st_t can be locked at once by another client (no row lock
-- is left behind), and a DDL on the table goes through within a second (no
-- metadata lock is).
local function table_free()
  local ok = pcall(function()
    I.exec("START TRANSACTION")
    I.q("SELECT * FROM st_t FOR UPDATE NOWAIT")
  end)
  I.exec("ROLLBACK")
  if not ok then return false, "a row of st_t is locked" end
  local ddl = pcall(I.exec, "SET STATEMENT lock_wait_timeout=1 FOR ALTER TABLE st_t COMMENT = 'free'")
  if not ddl then return false, "ALTER TABLE st_t waited on a metadata lock" end
  return true
end

--- The server holds nothing for thread_id: no metadata lock, no InnoDB
--- transaction, and st_t is free for everyone.
local function assert_holds_nothing(thread_id, what)
  local mdl = mdl_of(thread_id)
  assert(#mdl == 0, string.format("%s: connection %d still holds a metadata lock (%s on %s)",
    what, thread_id, tostring(mdl[1] and mdl[1].LOCK_MODE), tostring(mdl[1] and mdl[1].TABLE_NAME)))
  assert(trx_gone(thread_id), string.format("%s: connection %d still has an InnoDB transaction", what, thread_id))
  local free, why = table_free()
  assert(free, what .. ": " .. tostring(why))
end

local function rows(where)
  return tonumber(I.scalar("SELECT COUNT(*) FROM st_t WHERE " .. where))
end

local function kill(thread_id, how)
  I.exec(string.format("KILL %s %d", how or "CONNECTION", thread_id))
  if (how or "CONNECTION") == "CONNECTION" then assert.is_true(H.connection_gone(thread_id)) end
end

-- KILL QUERY thread_id from a background client after delay seconds (the
-- statement to kill is running in this process meanwhile).
local function kill_query_later(thread_id, delay)
  local sock = assert(H.socket, "SCOPED_TEST_SOCKET is not set")
  os.execute(string.format("(sleep %.2f; mariadb -uroot -S '%s' -e 'KILL QUERY %d') >/dev/null 2>&1 &",
    delay, sock, thread_id))
end

local function reset_table()
  I.exec("DELETE FROM st_t")
  I.exec("INSERT INTO st_t (id, v) VALUES (1, 1), (2, 2), (3, 3), (4, 4)")
end

setup(function()
  local c = independent.connect()
  I = {
    exec = function(sql) c:run(sql) end,
    q = function(sql) return c:rows(sql) end,
    scalar = function(sql) return c:scalar(sql) end,
    has_trx = function(id) return c:has_trx(id) end,
    trx_gone = function(id) return c:trx_gone(id) end,
  }
  pcall(I.exec, "INSTALL SONAME 'metadata_lock_info'") -- present already on a second run
  I.exec("DROP TABLE IF EXISTS st_t")
  I.exec("CREATE TABLE st_t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB")
  I.exec("DROP PROCEDURE IF EXISTS st_rows_then_fail")
  I.exec("CREATE PROCEDURE st_rows_then_fail() BEGIN SELECT 1 AS a; INSERT INTO st_t (id, v) VALUES (1, 9); END")
end)

teardown(function()
  I.exec("DROP PROCEDURE IF EXISTS st_rows_then_fail")
  I.exec("DROP TABLE IF EXISTS st_t")
end)

-- Every engine a test makes is disposed after it, passed or failed, and
-- what a failed test left checked out is collected first: a test that
-- fails must not leave a lock that blocks the next one.
local engines = {}
local function track(e)
  engines[#engines + 1] = e
  return e
end

before_each(reset_table)

after_each(function()
  gc_all()
  for i = #engines, 1, -1 do
    engines[i]:dispose()
    engines[i] = nil
  end
  pcall(I.exec, "ROLLBACK")
end)

-- ---- the failing-first-statement family ------------------------------------------
--
-- A statement that fails as the first of a transaction has opened it on the
-- server (InnoDB's locks, the table's metadata lock, a snapshot) while the
-- client's copy of the server status, which an ERR packet does not update,
-- says no transaction is open. Each way to end the unit must roll it back.

-- name, code, function(thread_id) run just before the statement (or nil),
-- the statement. The statements send no result set before they fail (or,
-- the CALL, one that opened no transaction): a result set's header carries
-- the server status, in-transaction flag and all, so a SELECT on a table
-- that fails half-way was never the problem.
local FAILURES = {
  {"duplicate key", 1062, nil, "INSERT INTO st_t (id, v) VALUES (1, 9)"},
  {"unknown column", 1054, nil, "SELECT nosuch FROM st_t"},
  {"lock wait (NOWAIT)", 1205, function()
    I.exec("START TRANSACTION")
    I.q("SELECT * FROM st_t WHERE id = 4 FOR UPDATE")
  end, "SELECT * FROM st_t WHERE id = 4 FOR UPDATE NOWAIT"},
  {"KILL QUERY", 1317, function(id) kill_query_later(id, 0.2) end,
   "UPDATE st_t SET v = SLEEP(3) WHERE id = 1"},
  {"max_statement_time", 1969, nil,
   "SET STATEMENT max_statement_time=0.05 FOR UPDATE st_t SET v = SLEEP(1) WHERE id = 1"},
  {"an error after some rows were sent (a CALL)", 1062, nil, "CALL st_rows_then_fail()"},
}

-- What holds the connection, how to learn its thread id (before anything
-- fails: the statement that fails is the first of the unit) and how to run
-- the statement. Each returns a unit: {thread_id, run(sql), ends = {...}}.
local function plain_engine() return track(scoped.create_engine(H.url, {pool_size = 1})) end
local function listened_engine()
  local e = track(scoped.create_engine(H.url, {pool_size = 1}))
  scoped.event.listen(e, "checkout", function() end) -- not plain: the Connection path
  return e
end

-- The connection a pool of one would hand out next: its thread id (so the
-- unit's first statement can be the failing one).
local function next_thread_id(engine)
  local c = engine:connect()
  local id = c.raw:thread_id()
  c:close()
  return id
end

local SESSION_ENDINGS = {
  rollback = function(u) u.session:rollback() end,
  close = function(u) u.session:close() end,
  commit = function(u) u.session:commit() end,
  remove = function(u) u.registry:remove() end,
  ["garbage collection"] = function(u)
    u.session, u.registry = nil, nil
    gc_all()
  end,
}

local PATHS = {
  {"a Session on a plain engine (the C fast path)", plain_engine},
  {"a Session on an engine with a listener (the Connection path)", listened_engine},
}

describe("a statement failing as the first of a unit leaves nothing on the server after", function()
  for _, f in ipairs(FAILURES) do
    local name, code, before, sql = f[1], f[2], f[3], f[4]
    for _, path in ipairs(PATHS) do
      for ending, finish in pairs(SESSION_ENDINGS) do
        it(string.format("%s (%d), %s, ended by %s", name, code, path[1], ending), function()
          local engine = path[2]()
          local id = next_thread_id(engine)
          -- the unit holds the only references (the garbage collection case drops them)
          local u = {registry = scoped.scoped_session(scoped.sessionmaker{bind = engine})}
          u.session = u.registry()
          if before then before(id) end
          local err = H.error_of(u.session.execute, u.session, sql)
          pcall(I.exec, "ROLLBACK") -- the independent client's own lock, if it took one
          assert.equal(code, err.code)
          -- the premise: the failed statement did leave something behind
          assert.is_true(#mdl_of(id) > 0 or trx_of(id), "nothing held after " .. name)
          finish(u)
          assert_holds_nothing(id, name .. ", " .. ending)
          assert.equal(0, engine.pool:checkedout())
          engine:dispose()
        end)
      end
    end

    local CONNECTION_ENDINGS = {
      rollback = function(u) u.conn:rollback() end,
      close = function(u) u.conn:close() end,
      commit = function(u) u.conn:commit() end,
      ["garbage collection"] = function(u)
        u.conn = nil
        gc_all()
      end,
    }
    for ending, finish in pairs(CONNECTION_ENDINGS) do
      it(string.format("%s (%d), a Connection, ended by %s", name, code, ending), function()
        local engine = plain_engine()
        local u = {conn = engine:connect()}
        local id = u.conn.raw:thread_id()
        if before then before(id) end
        local err = H.error_of(u.conn.execute, u.conn, sql)
        pcall(I.exec, "ROLLBACK")
        assert.equal(code, err.code)
        assert.is_true(#mdl_of(id) > 0 or trx_of(id), "nothing held after " .. name)
        finish(u)
        assert_holds_nothing(id, name .. ", " .. ending)
        engine:dispose()
      end)
    end

    it(string.format("%s (%d), a raw connection given back to the pool as it is (reset on return)", name, code),
      function()
        local engine = plain_engine()
        local raw = engine._cpool:checkout()
        local id = raw:thread_id()
        if before then before(id) end
        local err = H.error_of(raw.execute, raw, sql)
        pcall(I.exec, "ROLLBACK")
        assert.equal(code, err.code)
        raw:close()
        assert_holds_nothing(id, name .. ", reset on return")
        assert.equal(1, engine.pool:checkedin()) -- kept, not discarded: the ROLLBACK worked
        engine:dispose()
      end)
  end

  it("a real lock wait timeout (innodb_lock_wait_timeout=1), ended by close()", function()
    local engine = plain_engine()
    local s = scoped.sessionmaker{bind = engine}()
    local id = next_thread_id(engine)
    I.exec("START TRANSACTION")
    I.q("SELECT * FROM st_t WHERE id = 4 FOR UPDATE")
    local err = H.error_of(s.execute, s,
      "SET STATEMENT innodb_lock_wait_timeout=1 FOR UPDATE st_t SET v = 5 WHERE id = 4")
    I.exec("ROLLBACK")
    assert.equal(1205, err.code)
    s:close()
    assert_holds_nothing(id, "lock wait timeout, close")
    engine:dispose()
  end)

  it("the rollback after a failure is one ROLLBACK, and a unit with nothing to roll back sends none", function()
    -- the saved round trip stays saved where the rule proves it safe
    local engine = plain_engine()
    local s = scoped.sessionmaker{bind = engine}()
    local id = next_thread_id(engine)
    -- the ROLLBACKs the pool's one connection has received (its own session
    -- counter, read on it between units: a SELECT from information_schema
    -- opens no transaction, so reading it adds none)
    local function rollbacks()
      local c = engine:connect()
      assert.equal(id, c.raw:thread_id())
      local n = tonumber(c:scalar("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS " ..
        "WHERE VARIABLE_NAME = 'COM_ROLLBACK'"))
      c:close()
      return n
    end
    local r0 = rollbacks()
    s:execute("SELECT 1")
    s:close() -- answered by a reply that says no transaction: nothing to roll back
    assert.equal(r0, rollbacks())
    H.error_of(s.execute, s, "INSERT INTO st_t (id, v) VALUES (1, 9)")
    s:close()
    assert.equal(r0 + 1, rollbacks())
    assert_holds_nothing(id, "duplicate key, close")
    engine:dispose()
  end)
end)

-- ---- 1. rollback first after a lost transaction -------------------------------------

describe("after the connection is lost inside a transaction", function()
  it("a Connection refuses statements and commit() until rollback(), then works on a new one", function()
    local e = plain_engine()
    local c = e:connect()
    local tx = c:begin()
    c:execute("INSERT INTO st_t (id, v) VALUES (10, 0)")
    local id = c.raw:thread_id()
    kill(id)
    local err = H.error_of(tx.commit, tx) -- the COMMIT is lost with its connection
    assert.is_true(err.connection_invalidated)
    -- a statement now would run outside the transaction the caller believes in
    err = H.error_of(c.execute, c, "INSERT INTO st_t (id, v) VALUES (11, 0)")
    assert.equal("PendingRollbackError", err.kind)
    assert.is_true(scoped.exc.is(err, "InvalidRequestError"))
    assert.equal("Can't reconnect until invalid transaction is rolled back.  Please rollback() fully " ..
      "before proceeding", err.message)
    assert.equal("PendingRollbackError", H.error_of(c.commit, c).kind)
    assert.equal("PendingRollbackError", H.error_of(tx.commit, tx).kind)
    assert.equal("InvalidRequestError", H.error_of(c.begin, c).kind) -- already initialized
    assert.equal(0, rows("id IN (10, 11)"))
    c:rollback()
    c:execute("INSERT INTO st_t (id, v) VALUES (12, 0)")
    c:commit()
    assert.equal(1, rows("id = 12"))
    assert.equal(0, rows("id IN (10, 11)"))
    c:close()
    e:dispose()
  end)

  for _, path in ipairs(PATHS) do
    it("a Session refuses statements and commit() after a lost COMMIT until rollback(): " .. path[1], function()
      local e = path[2]()
      local s = scoped.sessionmaker{bind = e}()
      s:execute("INSERT INTO st_t (id, v) VALUES (10, 0)")
      kill(s:scalar("SELECT CONNECTION_ID()"))
      local err = H.error_of(s.commit, s)
      assert.is_true(err.connection_invalidated)
      assert.equal("PendingRollbackError", H.error_of(s.execute, s, "INSERT INTO st_t (id, v) VALUES (11, 0)").kind)
      assert.equal("PendingRollbackError", H.error_of(s.commit, s).kind)
      assert.equal(0, e.pool:checkedout())
      assert.equal(0, rows("id IN (10, 11)"))
      s:rollback()
      s:execute("INSERT INTO st_t (id, v) VALUES (12, 0)")
      s:commit()
      assert.equal(1, rows("id = 12"))
      e:dispose()
    end)
  end

  it("a lost connection noticed by a statement: the statement raises, then PendingRollbackError", function()
    local e = listened_engine()
    local s = scoped.sessionmaker{bind = e}()
    s:execute("INSERT INTO st_t (id, v) VALUES (10, 0)")
    kill(s:scalar("SELECT CONNECTION_ID()"))
    assert.is_true(H.error_of(s.execute, s, "SELECT 1").connection_invalidated)
    assert.equal("PendingRollbackError", H.error_of(s.execute, s, "SELECT 1").kind)
    assert.equal("PendingRollbackError", H.error_of(s.commit, s).kind)
    s:rollback()
    assert.equal(1, s:scalar("SELECT 1"))
    s:close()
    assert.equal(0, rows("id = 10"))
    e:dispose()
  end)
end)

-- ---- 2. invalidate() inside a transaction ------------------------------------------

describe("conn:invalidate() inside a transaction", function()
  it("keeps the transaction to be rolled back: commit and begin_nested refused, a savepoint's rollback silent",
    function()
      local e = plain_engine()
      local c = e:connect()
      c:execute("INSERT INTO st_t (id, v) VALUES (20, 0)")
      local sp = c:begin_nested()
      c:execute("INSERT INTO st_t (id, v) VALUES (21, 0)")
      local id = c.raw:thread_id()
      c:invalidate()
      assert.is_true(H.connection_gone(id))
      local err = H.error_of(c.execute, c, "SELECT 1")
      assert.equal("PendingRollbackError", err.kind)
      assert.truthy(err.message:find("invalid savepoint transaction", 1, true))
      sp:rollback() -- silent: no ROLLBACK TO SAVEPOINT reaches a fresh connection (1305)
      assert.equal("PendingRollbackError", H.error_of(c.commit, c).kind)
      assert.equal("PendingRollbackError", H.error_of(c.begin_nested, c).kind)
      assert.equal(0, e.pool:checkedout()) -- no new connection was taken for any of it
      c:rollback()
      c:execute("INSERT INTO st_t (id, v) VALUES (22, 0)")
      c:commit()
      assert.equal(0, rows("id IN (20, 21)"))
      assert.equal(1, rows("id = 22"))
      c:close()
      e:dispose()
    end)
end)

-- ---- 3. SessionTransaction state ------------------------------------------------------

-- what a Lua 5.4 `local t <close> = s:begin()` does at the end of its block
-- (written out so that the spec runs on LuaJIT too)
local function end_block(t, err) getmetatable(t).__close(t, err) end

describe("SessionTransaction", function()
  for _, path in ipairs(PATHS) do
    it("is over when the session's own commit() ends it: " .. path[1], function()
      local e = path[2]()
      local s = scoped.sessionmaker{bind = e}()
      local t = s:begin()
      assert.is_true(t.is_active)
      s:execute("INSERT INTO st_t (id, v) VALUES (30, 0)")
      s:commit()
      assert.is_false(t.is_active)
      assert.equal(1, rows("id = 30"))
      -- still inside the block: nothing may run outside its transaction
      local msg = "Can't operate on closed transaction inside context manager.  " ..
        "Please complete the context manager before emitting further commands."
      local err = H.error_of(s.execute, s, "INSERT INTO st_t (id, v) VALUES (31, 0)")
      assert.equal("InvalidRequestError", err.kind)
      assert.equal(msg, err.message)
      assert.equal(msg, H.error_of(s.begin, s).message)
      assert.equal(msg, H.error_of(s.begin_nested, s).message)
      -- the closed transaction's own methods
      err = H.error_of(t.commit, t)
      assert.equal("ResourceClosedError", err.kind)
      assert.equal("This transaction is closed", err.message)
      assert.equal("ResourceClosedError", H.error_of(t.rollback, t).kind)
      end_block(t) -- commits nothing, raises nothing
      assert.equal(0, rows("id = 31"))
      assert.equal(0, e.pool:checkedout())
      -- after the block the session works again
      s:execute("INSERT INTO st_t (id, v) VALUES (32, 0)")
      s:commit()
      assert.equal(1, rows("id = 32"))
      e:dispose()
    end)
  end

  it("commits at the end of its block, rolls back on an error, and is closed after", function()
    local e = plain_engine()
    local s = scoped.sessionmaker{bind = e}()
    local t = s:begin()
    s:execute("INSERT INTO st_t (id, v) VALUES (33, 0)")
    end_block(t)
    assert.is_false(t.is_active)
    assert.equal(1, rows("id = 33"))
    assert.equal("ResourceClosedError", H.error_of(t.commit, t).kind)
    t = s:begin()
    s:execute("INSERT INTO st_t (id, v) VALUES (34, 0)")
    end_block(t, "boom")
    assert.equal(0, rows("id = 34"))
    assert.equal("InvalidRequestError", H.error_of(function() s:begin(); s:begin() end).kind)
    s:close()
    e:dispose()
  end)
end)

-- ---- 4. pool events ---------------------------------------------------------------

describe("pool events", function()
  local function recording_engine(opts)
    local e = track(scoped.create_engine(H.url, opts or {pool_size = 1}))
    local seen = {}
    scoped.event.listen(e, "reset", function(raw, state)
      assert.truthy(raw.execute)
      seen[#seen + 1] = {"reset", state.transaction_was_reset, state.terminate_only}
    end)
    scoped.event.listen(e, "checkin", function() seen[#seen + 1] = {"checkin"} end)
    scoped.event.listen(e, "invalidate", function(_, err) seen[#seen + 1] = {"invalidate", err} end)
    return e, seen
  end

  it("reset fires on every return, before checkin, saying whether the Connection rolled back", function()
    local e, seen = recording_engine()
    local c = e:connect()
    c:close() -- no transaction
    c = e:connect()
    c:execute("INSERT INTO st_t (id, v) VALUES (40, 0)")
    c:close() -- the Connection rolls its transaction back: transaction_was_reset
    c = e:connect()
    c:execute("INSERT INTO st_t (id, v) VALUES (41, 0)")
    c:commit()
    c:close()
    assert.same({{"reset", false, false}, {"checkin"}, {"reset", true, false}, {"checkin"},
                 {"reset", false, false}, {"checkin"}}, seen)
    assert.equal(0, rows("id = 40"))
    assert.equal(1, rows("id = 41"))
    e:dispose()
  end)

  it("a Connection dropped and garbage-collected fires reset and checkin, and is rolled back", function()
    local e, seen = recording_engine()
    do
      local c = e:connect()
      c:execute("INSERT INTO st_t (id, v) VALUES (42, 0)")
    end
    gc_all()
    assert.same({{"reset", false, false}, {"checkin"}}, seen)
    assert.equal(0, e.pool:checkedout())
    assert.equal(0, rows("id = 42"))
    assert.is_true(table_free())
    e:dispose()
  end)

  it("the invalidate listener gets the error that caused it", function()
    local e, seen = recording_engine()
    local c = e:connect()
    local mine = {why = "mine"}
    c:invalidate(mine)
    assert.equal("invalidate", seen[1][1])
    assert.equal(mine, seen[1][2])
    c:rollback()
    local id = c:scalar("SELECT CONNECTION_ID()")
    kill(id)
    local err = H.error_of(c.execute, c, "SELECT 1")
    c:rollback() -- lets the dead connection go: the invalidate event
    local last
    for _, ev in ipairs(seen) do if ev[1] == "invalidate" then last = ev end end
    assert.equal("OperationalError", last[2].kind)
    assert.equal(err.code, last[2].code)
    assert.is_true(last[2].connection_invalidated)
    c:close()
    e:dispose()
  end)
end)

-- ---- 5. Session.info ------------------------------------------------------------------

describe("Session.info", function()
  it("is a table of each session's own, the maker's info copied into it", function()
    local e = plain_engine()
    local Plain = scoped.sessionmaker{bind = e}
    local a, b = Plain(), Plain()
    assert.same({}, a.info)
    a.info.user = 1
    assert.is_nil(b.info.user)
    local base = {app = "x"}
    local Maker = scoped.sessionmaker{bind = e, info = base}
    local c, d = Maker(), Maker{info = {req = 7}}
    assert.same({app = "x"}, c.info)
    assert.same({app = "x", req = 7}, d.info)
    c.info.app = "changed"
    assert.equal("x", base.app)
    assert.equal("x", Maker().info.app)
    e:dispose()
  end)
end)

-- ---- 6. pool_size = 0 -------------------------------------------------------------------

describe("pool_size = 0", function()
  it("means no limit at all (SQLAlchemy 2.0), not a pool that always times out", function()
    local e = track(scoped.create_engine(H.url, {pool_size = 0, max_overflow = 0, pool_timeout = 0.2}))
    local held, ids = {}, {}
    for i = 1, 4 do
      held[i] = e:connect()
      ids[i] = held[i]:scalar("SELECT CONNECTION_ID()")
    end
    local open = tonumber(I.scalar("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID IN (" ..
      table.concat(ids, ",") .. ")"))
    assert.equal(4, open)
    for i = 1, 4 do held[i]:close() end
    assert.equal(4, e.pool:checkedin()) -- every one kept
    e:dispose()
  end)
end)

-- ---- 8, 9. a Connection that took a new connection -------------------------------------

describe("a Connection on a new connection after invalidate() or a disconnect", function()
  it("commits what it runs there (the transaction is marked on the new checkout)", function()
    local e = plain_engine()
    local c = e:connect()
    c:invalidate()
    c:execute("INSERT INTO st_t (id, v) VALUES (50, 0)")
    c:commit()
    assert.equal(1, rows("id = 50"))
    -- the retry after a server-side KILL: KILL -> 2013 -> rollback() -> INSERT -> commit()
    c:execute("INSERT INTO st_t (id, v) VALUES (51, 0)")
    kill(c.raw:thread_id())
    H.error_of(c.execute, c, "INSERT INTO st_t (id, v) VALUES (52, 0)")
    c:rollback()
    c:execute("INSERT INTO st_t (id, v) VALUES (52, 0)")
    c:commit()
    assert.equal(1, rows("id = 52"))
    assert.equal(0, rows("id = 51"))
    c:close()
    e:dispose()
  end)

  it("begin() and begin_nested() after a reconnect work", function()
    local e = plain_engine()
    local c = e:connect()
    c:execute("SELECT 1")
    kill(c.raw:thread_id())
    H.error_of(c.execute, c, "SELECT 1")
    c:rollback()
    local tx = c:begin()
    c:execute("INSERT INTO st_t (id, v) VALUES (53, 0)")
    local sp = c:begin_nested()
    c:execute("INSERT INTO st_t (id, v) VALUES (54, 0)")
    sp:rollback()
    tx:commit()
    assert.equal(1, rows("id = 53"))
    assert.equal(0, rows("id = 54"))
    c:close()
    e:dispose()
  end)
end)

-- ---- 10. stale handles -------------------------------------------------------------

describe("a handle whose transaction is over", function()
  it("never commits or rolls back a later transaction", function()
    local e = plain_engine()
    local c = e:connect()
    local old = c:begin()
    c:execute("INSERT INTO st_t (id, v) VALUES (60, 0)")
    c:commit()
    c:execute("INSERT INTO st_t (id, v) VALUES (61, 0)") -- a new transaction (autobegun)
    local err = H.error_of(old.commit, old)
    assert.equal("InvalidRequestError", err.kind)
    assert.equal("This transaction is inactive", err.message)
    old:rollback() -- does nothing
    old:close()
    assert.is_false(old.is_active)
    assert.equal(0, rows("id = 61")) -- not committed by the stale handle
    c:commit()
    assert.equal(1, rows("id = 61")) -- nor rolled back by it
    c:close()
    e:dispose()
  end)

  it("an old savepoint handle never rolls back to a new savepoint of the same Connection", function()
    local e = plain_engine()
    local c = e:connect()
    local sp1 = c:begin_nested()
    c:commit()
    c:execute("INSERT INTO st_t (id, v) VALUES (62, 0)")
    local sp2 = c:begin_nested()
    assert.are_not.equal(sp1.savepoint, sp2.savepoint)
    c:execute("INSERT INTO st_t (id, v) VALUES (63, 0)")
    sp1:rollback() -- over with its transaction: nothing
    assert.equal("This nested transaction is inactive", H.error_of(sp1.commit, sp1).message)
    sp2:commit()
    c:commit()
    assert.equal(2, rows("id IN (62, 63)"))
    c:close()
    e:dispose()
  end)

  it("savepoints: releasing inner then outer, rolling back inner then outer", function()
    local e = plain_engine()
    local c = e:connect()
    local outer = c:begin_nested()
    c:execute("INSERT INTO st_t (id, v) VALUES (64, 0)")
    local inner = c:begin_nested()
    c:execute("INSERT INTO st_t (id, v) VALUES (65, 0)")
    inner:commit()
    outer:commit()
    local outer2 = c:begin_nested()
    c:execute("INSERT INTO st_t (id, v) VALUES (66, 0)")
    local inner2 = c:begin_nested()
    c:execute("INSERT INTO st_t (id, v) VALUES (67, 0)")
    inner2:rollback()
    outer2:rollback()
    c:commit()
    assert.equal(2, rows("id IN (64, 65)"))
    assert.equal(0, rows("id IN (66, 67)"))
    c:close()
    e:dispose()
  end)
end)

-- ---- 11. close() rolls back under every reset mode ----------------------------------------

describe("Connection:close() rolls back its own transaction", function()
  for _, mode in ipairs({"commit", false, "reset_connection"}) do
    it("with pool_reset_on_return = " .. tostring(mode), function()
      local e = track(scoped.create_engine(H.url, {pool_size = 1, pool_reset_on_return = mode}))
      local c = e:connect()
      local id = c.raw:thread_id()
      c:execute("INSERT INTO st_t (id, v) VALUES (70, 0)")
      c:close()
      assert.equal(0, rows("id = 70"))
      assert_holds_nothing(id, "close() under " .. tostring(mode))
      -- the next user's commit commits only its own work
      c = e:connect()
      assert.equal(id, c.raw:thread_id())
      c:execute("INSERT INTO st_t (id, v) VALUES (71, 0)")
      c:commit()
      c:close()
      assert.equal(0, rows("id = 70"))
      assert.equal(1, rows("id = 71"))
      e:dispose()
    end)
  end

  it("and so does a Session's close() under pool_reset_on_return = 'commit'", function()
    local e = track(scoped.create_engine(H.url, {pool_size = 1, pool_reset_on_return = "commit"}))
    local s = scoped.sessionmaker{bind = e}()
    s:execute("INSERT INTO st_t (id, v) VALUES (72, 0)")
    s:close()
    assert.equal(0, rows("id = 72"))
    e:dispose()
  end)
end)

-- ---- 12. session state that leaks to the next user ---------------------------------------

describe("session state left by one user", function()
  it("SET autocommit = 1 is undone before the next user gets the connection", function()
    local e = track(scoped.create_engine(H.url, {pool_size = 1}))
    local s = scoped.sessionmaker{bind = e}()
    s:execute("SET autocommit = 1")
    s:close()
    s:execute("INSERT INTO st_t (id, v) VALUES (80, 0)")
    assert.equal(0, tonumber(s:scalar("SELECT @@autocommit")))
    s:close() -- rolls back: the row was never committed on its own
    assert.equal(0, rows("id = 80"))
    e:dispose()
  end)

  it("pool_reset_on_return = 'reset_connection' clears temporary tables, user variables, locks and " ..
     "session variables, and applies the engine's settings and connect listeners again", function()
    local e = track(scoped.create_engine(H.url, {pool_size = 1, pool_reset_on_return = "reset_connection",
      isolation_level = "READ COMMITTED", connect_args = {init_command = "SET @from_init = 5"}}))
    local connects = 0
    scoped.event.listen(e, "connect", function(raw)
      connects = connects + 1
      raw:execute("SET @from_listener = 6")
    end)
    local s = scoped.sessionmaker{bind = e}()
    local id = s:scalar("SELECT CONNECTION_ID()")
    assert.equal(5, s:scalar("SELECT @from_init"))
    s:execute("CREATE TEMPORARY TABLE tmp_leak (a INT)")
    s:execute("SET @user_id = 42, SESSION sql_mode = 'ANSI_QUOTES', SESSION tx_isolation = 'SERIALIZABLE'")
    assert.equal(1, s:scalar("SELECT GET_LOCK('scoped_leak', 0)"))
    s:execute("SET autocommit = 1")
    s:close()
    assert.equal("1", I.scalar("SELECT IS_FREE_LOCK('scoped_leak')"))
    assert.equal(id, s:scalar("SELECT CONNECTION_ID()")) -- the same server connection
    assert.equal(scoped.null, s:scalar("SELECT @user_id"))
    assert.equal(5, s:scalar("SELECT @from_init"))
    assert.equal(6, s:scalar("SELECT @from_listener"))
    assert.equal(2, connects)
    assert.equal("READ-COMMITTED", s:scalar("SELECT @@tx_isolation"))
    assert.equal(0, tonumber(s:scalar("SELECT @@autocommit")))
    assert.is_nil(s:scalar("SELECT @@sql_mode"):find("ANSI_QUOTES", 1, true))
    s:execute("CREATE TEMPORARY TABLE tmp_leak (a INT)") -- 1050 if it had survived
    s:close()
    e:dispose()
  end)
end)
