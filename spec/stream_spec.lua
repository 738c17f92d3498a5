-- Streaming results (issue 20): execution_options{stream_results = true,
-- yield_per = n} and Session:execute(sql, params, {stream_results = true}).
-- Rows are read off the connection as the caller asks for them; while the
-- Result is open the connection is busy; closing it (by hand, by reading
-- to the end, by <close>, by the collector, by commit/rollback/close of its
-- Connection or Session, by a checkin) leaves the connection in sync.
local scoped = require "scoped"
local H = require "helper"

-- under ASan and valgrind (SCOPED_SLOW=1) freed memory is held back (ASan's
-- quarantine alone is 256 MiB): the RSS bound is not checked there, and the
-- stream is shorter; every row is still counted
local SLOW = os.getenv("SCOPED_SLOW") == "1"

local function gc_all()
  if rawget(_G, "jit") then jit.flush() end
  collectgarbage("collect"); collectgarbage("collect")
end

-- the process's resident set, in bytes (/proc/self/statm: pages)
local function rss()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("*n", "*n")
  f:close()
  return resident * 4096
end

-- whether the server holds a transaction for thread_id, asked through the
-- independent client (LuaSQL), polled as innodb_trx's cache needs
local independent_client
local function ind()
  independent_client = independent_client or require("support.independent").connect()
  return independent_client
end
local function trx_gone(thread_id) return ind():trx_gone(thread_id) end

describe("streaming results", function()
  local engine
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 2, max_overflow = 0, pool_timeout = 2})
    local c = engine:connect()
    c:execute("DROP TABLE IF EXISTS stream_t")
    c:execute("CREATE TABLE stream_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    c:commit()
    c:close()
  end)
  after_each(function()
    gc_all()
    engine:dispose()
  end)

  it("execution_options returns the Connection and checks its options", function()
    local c = engine:connect()
    assert.equal(c, c:execution_options{stream_results = true, yield_per = 5})
    assert.same({stream_results = true, yield_per = 5}, c:get_execution_options())
    assert.equal("ArgumentError", H.error_of(c.execution_options, c, {colour = 1}).kind)
    assert.equal("ArgumentError", H.error_of(c.execution_options, c, {yield_per = 0}).kind)
    assert.equal("ArgumentError", H.error_of(c.execution_options, c, {stream_results = "yes"}).kind)
    assert.equal("ArgumentError", H.error_of(c.execution_options, c, "stream").kind)
    assert.equal("ArgumentError", H.error_of(c.execute, c, "SELECT 1", nil, {nope = true}).kind)
    local r = c:execute("SELECT seq FROM seq_1_to_3")
    assert.is_true(r.streaming)
    assert.equal(5, r.yield_per)
    r:close()
    -- stream_results = false: buffered again
    c:execution_options{stream_results = false}
    assert.is_nil(c:execute("SELECT 1").streaming)
    -- a statement that returns no rows gives a plain Result
    local w = c:execute("INSERT INTO stream_t VALUES (1)", nil, {stream_results = true})
    assert.equal(1, w.rowcount)
    assert.is_false(w.returns_rows)
    assert.equal(7, c:execute("SELECT 7", nil, {stream_results = true}):scalar())
    c:close()
  end)

  it("its methods check their self (use a colon)", function()
    local c = engine:connect()
    local r = c:execute("SELECT seq FROM seq_1_to_3", nil, {stream_results = true})
    for _, name in ipairs({"fetchone", "fetchmany", "all", "keys", "close", "first", "one",
                           "scalar", "iter", "partitions", "scalars", "mappings"}) do
      local err = H.error_of(r[name], nil)
      assert.equal("ArgumentError", err.kind, name)
    end
    assert.equal("ArgumentError", H.error_of(c.execution_options, nil, {}).kind)
    assert.equal("ArgumentError", H.error_of(c.get_execution_options, 5).kind)
    assert.equal(1, r:first()[1])
    c:close()
  end)

  it("reads 2,000,000 rows in constant memory, every row once", function()
    local c = engine:connect():execution_options{stream_results = true}
    local N = SLOW and 200000 or 2000000
    gc_all()
    local before = rss()
    local n, sum = 0, 0
    for row in c:execute("SELECT seq FROM seq_1_to_" .. N):iter() do
      n = n + 1
      sum = sum + row[1]
    end
    gc_all()
    local grown = rss() - before
    assert.equal(N, n)
    assert.equal(N * (N + 1) / 2, sum)
    print(("# stream of %d rows: RSS grew by %.1f MiB"):format(N, grown / 1048576))
    if not SLOW then
      assert.is_true(grown < 20 * 1048576, ("RSS grew by %d bytes"):format(grown))
    end
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:close()
  end)

  it("every method streams: fetchone, fetchmany, all, iter, scalars, mappings, first, one, keys", function()
    local c = engine:connect():execution_options{stream_results = true}
    local r = c:execute("SELECT seq AS a, seq * 10 AS b FROM seq_1_to_10")
    assert.same({"a", "b"}, r:keys())
    assert.is_true(r.returns_rows)
    local row = r:fetchone()
    assert.equal(1, row.a); assert.equal(10, row[2]); assert.same({"a", "b"}, row._fields)
    local two = r:fetchmany(2)
    assert.equal(2, #two); assert.equal(3, two[2].a)
    local rest = r:all()
    assert.equal(7, #rest); assert.equal(10, rest[7].a)
    assert.is_nil(r:fetchone()) -- read to its end: no more rows, not an error
    assert.same({}, r:fetchmany(3))
    assert.equal(10, r.rowcount)
    -- the connection is free again
    assert.equal(1, c:execute("SELECT 1"):scalar())
    local s = 0
    for v in c:execute("SELECT seq FROM seq_1_to_5"):scalars():iter() do s = s + v end
    assert.equal(15, s)
    local m = c:execute("SELECT seq AS x FROM seq_1_to_3"):mappings():all()
    assert.same({{x = 1}, {x = 2}, {x = 3}}, m)
    assert.equal(1, c:execute("SELECT seq FROM seq_1_to_100"):first()[1])
    assert.equal(42, c:execute("SELECT 42"):scalar())
    assert.equal("NoResultFound", H.error_of(function() return c:execute("SELECT 1 FROM seq_1_to_3 WHERE seq > 5"):one() end).kind)
    assert.equal("MultipleResultsFound", H.error_of(function() return c:execute("SELECT seq FROM seq_1_to_3"):one() end).kind)
    assert.equal(7, c:execute("SELECT 7"):scalar_one())
    c:close()
  end)

  it("partitions(n) on a streaming and on a buffered Result", function()
    local c = engine:connect()
    for _, opts in ipairs({{stream_results = true}, {stream_results = false}}) do
      local sizes, total = {}, 0
      for rows in c:execute("SELECT seq FROM seq_1_to_10", nil, opts):partitions(4) do
        sizes[#sizes + 1] = #rows
        for _, r in ipairs(rows) do total = total + r.seq end
      end
      assert.same({4, 4, 2}, sizes)
      assert.equal(55, total)
    end
    -- yield_per is the default size; scalars():partitions
    local sizes = {}
    for vals in c:execute("SELECT seq FROM seq_1_to_7", nil, {yield_per = 3}):scalars():partitions() do
      sizes[#sizes + 1] = #vals
      assert.equal("number", type(vals[1]))
    end
    assert.same({3, 3, 1}, sizes)
    assert.equal("ArgumentError", H.error_of(function() return c:execute("SELECT 1"):partitions(0) end).kind)
    c:close()
  end)

  it("a stream abandoned after 10 rows, closed, then the connection reused", function()
    local c = engine:connect():execution_options{stream_results = true}
    local r = c:execute("SELECT seq FROM seq_1_to_100000")
    for _ = 1, 10 do assert.truthy(r:fetchone()) end
    r:close()
    assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
    r:close() -- twice is fine
    assert.equal(3, c:execute("SELECT 3"):scalar())
    c:execute("INSERT INTO stream_t VALUES (10)")
    c:commit()
    assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM stream_t WHERE id = 10"):scalar())
    c:close()
  end)

  it("is busy from the moment the stream opens, before any row is read", function()
    local c = engine:connect():execution_options{stream_results = true}
    local r = c:execute("SELECT seq FROM seq_1_to_1000")
    local err = H.error_of(c.execute, c, "SELECT 1")
    assert.equal("InvalidRequestError", err.kind)
    assert.truthy(err.message:find("streaming Result", 1, true), err.message)
    assert.equal(1, r:fetchone()[1]) -- the stream is intact
    r:close()
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
  end)

  it("while a stream is open its connection is busy: statements raise InvalidRequestError", function()
    local c = engine:connect():execution_options{stream_results = true}
    local r = c:execute("SELECT seq FROM seq_1_to_1000")
    r:fetchone()
    local raw = c:get_raw()
    for _, call in ipairs({
      function() return c:execute("SELECT 1") end,
      function() return c:execute("SELECT 1", nil, {stream_results = false}) end,
      function() return c:executemany("INSERT INTO stream_t VALUES (:id)", {{id = 1}}) end,
      function() return c:exec_driver_sql("SELECT 1") end,
      function() return c:begin_nested() end,
      function() return raw:ping() end,
      function() return raw:commit() end,
      function() return raw:rollback() end,
      function() return raw:reset() end,
    }) do
      local err = H.error_of(call)
      assert.equal("InvalidRequestError", err.kind)
      assert.truthy(err.message:find("streaming Result", 1, true), err.message)
      assert.falsy(err.message:find("out of sync", 1, true))
    end
    -- the stream goes on where it was
    assert.equal(2, r:fetchone()[1])
    assert.equal(998, #r:all())
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:close()
  end)

  it("commit while a stream is open: the stream is closed, the commit happens", function()
    local c = engine:connect():execution_options{stream_results = true}
    local tid = c:get_raw():thread_id()
    c:execute("INSERT INTO stream_t VALUES (1)")
    local r = c:execute("SELECT seq FROM seq_1_to_100000")
    r:fetchmany(5)
    c:commit()
    assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
    assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM stream_t WHERE id = 1"):scalar())
    assert.is_true(trx_gone(tid))
    -- and the connection goes on
    assert.equal(5, c:execute("SELECT 5"):scalar())
    -- rollback too
    c:execute("INSERT INTO stream_t VALUES (2)")
    r = c:execute("SELECT seq FROM seq_1_to_100000")
    r:fetchone()
    c:rollback()
    assert.equal(0, H.observer():execute("SELECT COUNT(*) FROM stream_t WHERE id = 2"):scalar())
    assert.is_true(trx_gone(tid))
    -- close: back to the pool, then checked out again and usable
    r = c:execute("SELECT seq FROM seq_1_to_100000")
    r:fetchone()
    c:close()
    assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
    assert.equal(0, engine.pool:checkedout())
    local c2 = engine:connect()
    assert.equal(8, c2:execute("SELECT 8"):scalar())
    c2:close()
  end)

  it("a stream dropped unread is closed by the collector, and the connection reused", function()
    local c = engine:connect():execution_options{stream_results = true}
    do
      local r = c:execute("SELECT seq FROM seq_1_to_100000")
      r:fetchone()
    end
    gc_all()
    assert.equal(4, c:execute("SELECT 4"):scalar())
    -- never read at all
    c:execute("SELECT seq FROM seq_1_to_100000")
    gc_all()
    assert.equal(6, c:execute("SELECT 6"):scalar())
    c:close()
  end)

  it("a Connection dropped with its stream open goes back to the pool clean", function()
    do
      local c = engine:connect():execution_options{stream_results = true}
      c:execute("SELECT seq FROM seq_1_to_100000"):fetchone()
    end
    gc_all()
    assert.equal(0, engine.pool:checkedout())
    local c = engine:connect()
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:close()
  end)

  if _VERSION == "Lua 5.4" then
    it("<close> closes a stream at the end of its scope", function()
      local c = engine:connect()
      local chunk = assert(load([[
        local c = ...
        local r <close> = c:execute("SELECT seq FROM seq_1_to_100000", nil, {stream_results = true})
        return r:fetchone()[1]
      ]]))
      assert.equal(1, chunk(c))
      assert.equal(2, c:execute("SELECT 2"):scalar())
      c:close()
    end)
  end

  it("an error the server sends mid-stream is raised at the row where it comes", function()
    local c = engine:connect()
    c:execute("DROP FUNCTION IF EXISTS stream_boom")
    c:execute([[CREATE FUNCTION stream_boom(x INT) RETURNS INT DETERMINISTIC
      BEGIN
        IF x > 3 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom at four'; END IF;
        RETURN x;
      END]])
    c:commit()
    local r = c:execute("SELECT stream_boom(seq) AS v FROM seq_1_to_10", nil, {stream_results = true})
    local seen = {}
    local err = H.error_of(function()
      for row in r:iter() do seen[#seen + 1] = row.v end
    end)
    assert.same({1, 2, 3}, seen)
    assert.truthy(tostring(err):find("boom at four", 1, true))
    assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
    c:rollback()
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:execute("DROP FUNCTION stream_boom")
    c:close()
  end)

  it("a connection killed mid-stream: the read raises, the connection is discarded, never pooled", function()
    for _, how in ipairs({"read", "close"}) do
      local c = engine:connect():execution_options{stream_results = true}
      local raw = c:get_raw()
      local tid = raw:thread_id()
      local r = c:execute("SELECT seq, REPEAT('x', 1000) FROM seq_1_to_1000000")
      r:fetchone()
      H.observer():execute("KILL " .. tid)
      if how == "read" then
        local err = H.error_of(function() for _ in r:iter() do end end)
        assert.is_true(err.connection_invalidated, how)
      else
        r:close() -- what is left is read until the connection fails: no error here
      end
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.is_true(raw:is_invalidated(), how)
      c:rollback()
      assert.equal(1, c:execute("SELECT 1"):scalar(), how)
      assert.are_not.equal(tid, c:get_raw():thread_id())
      c:close()
      assert.equal(0, engine.pool:checkedout())
      assert.is_true(H.connection_gone(tid))
    end
  end)

  it("a read cannot be re-entered from a finalizer run while it builds a row", function()
    local c = engine:connect():execution_options{stream_results = true}
    -- a garbage object with a finalizer (LuaJIT finalizes userdata only)
    local function with_gc(fn)
      if newproxy then
        local p = newproxy(true)
        getmetatable(p).__gc = fn
      else
        setmetatable({}, {__gc = fn})
      end
    end
    local errs, r, armed = {}, nil, false
    local function fin()
      if not armed then return end
      local ok, e = pcall(r.fetchone, r)
      errs[#errs + 1] = ok and "read" or e.kind
      ok, e = pcall(r.close, r)
      errs[#errs + 1] = ok and "closed" or e.kind
      ok, e = pcall(c.commit, c)
      errs[#errs + 1] = ok and "committed" or e.kind
    end
    -- a collector that cycles fast, so that a cycle ends inside the read
    -- whatever the heap the suite has grown (LuaJIT: its default pause
    -- waits for the heap to double)
    local pause = collectgarbage("setpause", 100)
    local stepmul = collectgarbage("setstepmul", 1000)
    finally(function()
      collectgarbage("setpause", pause)
      collectgarbage("setstepmul", stepmul)
    end)
    for _ = 1, 5 do
      gc_all()
      r = c:execute("SELECT seq, REPEAT('x', 200) FROM seq_1_to_20000")
      for _ = 1, 2000 do with_gc(fin) end -- finalized during the next cycle: inside the read
      armed = true
      local n = 0
      for _ in r:iter() do n = n + 1 end
      armed = false
      assert.equal(20000, n)
      if #errs > 0 then break end
    end
    assert.is_true(#errs >= 3, "no finalizer ran during a read")
    for _, e in ipairs(errs) do assert.equal("InvalidRequestError", e) end
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:close()
  end)

  it("rowcount is -1 until the end of the rows is read, then their count (DB-API)", function()
    local c = engine:connect():execution_options{stream_results = true}
    local r = c:execute("SELECT seq FROM seq_1_to_10")
    assert.equal(-1, r.rowcount)
    r:fetchmany(4)
    assert.equal(-1, r.rowcount)
    assert.equal(6, #r:fetchmany(6)) -- every row read, but not yet the end
    assert.equal(-1, r.rowcount)
    assert.is_nil(r:fetchone())
    assert.equal(10, r.rowcount)
    r:close()
    assert.equal(10, r.rowcount) -- stays readable once closed
    -- closed before its end: the count was never known
    r = c:execute("SELECT seq FROM seq_1_to_100000")
    r:fetchmany(3)
    r:close()
    assert.equal(-1, r.rowcount)
    -- so for commit, the collector's close
    r = c:execute("SELECT seq FROM seq_1_to_100000")
    r:fetchone()
    c:commit()
    assert.equal(-1, r.rowcount)
    -- all(), iter(), partitions() read to the end; first() reads the rest and drops it
    assert.equal(7, (function() local x = c:execute("SELECT seq FROM seq_1_to_7"); x:all(); return x.rowcount end)())
    r = c:execute("SELECT seq FROM seq_1_to_5")
    for _ in r:iter() do end
    assert.equal(5, r.rowcount)
    r = c:execute("SELECT seq FROM seq_1_to_9")
    assert.equal(1, r:first()[1])
    assert.equal(9, r.rowcount)
    r = c:execute("SELECT 1 FROM seq_1_to_3 WHERE seq > 5")
    assert.is_nil(r:fetchone())
    assert.equal(0, r.rowcount)
    c:close()
  end)

  it("iter() gives each row its own table, and ends at the end of the rows", function()
    local c = engine:connect():execution_options{stream_results = true}
    local rows = {}
    local r = c:execute("SELECT seq AS a, IF(seq = 2, NULL, seq) AS b FROM seq_1_to_3")
    for row in r:iter() do rows[#rows + 1] = row end
    assert.same({{1, 1}, {2, scoped.null}, {3, 3}}, rows)
    assert.are_not.equal(rows[1], rows[2])
    assert.equal(2, rows[2].a)
    assert.equal(3, r.rowcount)
    assert.is_nil(r:iter()()) -- read to its end: nothing more, not an error
    assert.equal(1, c:execute("SELECT 1"):scalar())
    c:close()
  end)

  describe("a CALL with several result sets", function()
    local function make_procs(c)
      c:execute("DROP PROCEDURE IF EXISTS stream_sets")
      c:execute([[CREATE PROCEDURE stream_sets()
        BEGIN
          SELECT seq AS a FROM seq_1_to_3;
          SELECT seq AS b, seq * 2 AS c, 'x' AS d FROM seq_1_to_1000;
          SELECT 'last' AS e;
        END]])
      c:execute("DROP PROCEDURE IF EXISTS stream_sets_boom")
      c:execute([[CREATE PROCEDURE stream_sets_boom()
        BEGIN
          SELECT seq AS a FROM seq_1_to_3;
          SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom in the second statement';
        END]])
      c:commit()
    end

    it("streams them one after the other: nextset() moves on, the connection busy until the last", function()
      local c = engine:connect()
      make_procs(c)
      c:execution_options{stream_results = true}
      local r = c:execute("CALL stream_sets()")
      assert.is_true(r.streaming)
      assert.same({"a"}, r:keys())
      assert.equal(1, r:fetchone().a)
      assert.equal(-1, r.rowcount)
      assert.is_true(r:nextset()) -- the rest of the first set is read and dropped
      assert.equal(3, r.rowcount) -- the first set's count, as a buffered Result's
      assert.same({"b", "c", "d"}, r:keys())
      local n = 0
      for row in r:iter() do
        n = n + 1
        assert.equal(n, row.b); assert.equal(2 * n, row.c); assert.equal("x", row[3])
      end
      assert.equal(1000, n)
      assert.is_nil(r:fetchone()) -- the end of this set, not of the stream
      assert.same({}, r:fetchmany(2))
      -- the third set is still to come: the connection is busy, never free to pool
      local err = H.error_of(c.execute, c, "SELECT 1")
      assert.equal("InvalidRequestError", err.kind)
      assert.truthy(err.message:find("streaming Result", 1, true), err.message)
      assert.is_true(r:nextset())
      assert.same({"e"}, r:keys())
      assert.equal("last", r:fetchone().e)
      assert.is_false(r:nextset())
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.is_false(r:nextset())
      assert.equal(3, r.rowcount)
      assert.equal(1, c:execute("SELECT 1"):scalar()) -- free again, in sync
      -- the same sets as a buffered Result gives
      local b = c:execute("CALL stream_sets()", nil, {stream_results = false})
      assert.is_nil(b.streaming)
      assert.equal(3, #b:all()); assert.is_true(b:nextset())
      assert.equal(1000, #b:all()); assert.is_true(b:nextset())
      assert.equal("last", b:scalar()); assert.is_false(b:nextset())
      c:close()
    end)

    it("first() and scalar() keep the next sets for nextset(), as on a buffered Result", function()
      local c = engine:connect()
      make_procs(c)
      local r = c:execute("CALL stream_sets()", nil, {stream_results = true})
      assert.equal(1, r:first().a)
      assert.is_true(r:nextset())
      assert.equal(1, r:scalar())
      assert.is_true(r:nextset())
      assert.equal("last", r:scalar())
      assert.is_false(r:nextset())
      assert.equal(4, c:execute("SELECT 4"):scalar())
      c:close()
    end)

    it("closed, committed or collected between its sets: the connection goes on in sync", function()
      local one = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_timeout = 2})
      finally(function() one:dispose() end)
      local c = one:connect()
      make_procs(c)
      c:execution_options{stream_results = true}
      local tid = c:get_raw():thread_id()
      -- close() in the middle of the second set
      local r = c:execute("CALL stream_sets()")
      assert.is_true(r:nextset())
      r:fetchmany(10)
      r:close()
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.is_false(r:nextset())
      assert.equal(2, c:execute("SELECT 2"):scalar())
      -- commit with the second set waiting
      c:execute("INSERT INTO stream_t VALUES (21)")
      r = c:execute("CALL stream_sets()")
      for _ in r:iter() do end
      c:commit()
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM stream_t WHERE id = 21"):scalar())
      assert.is_true(trx_gone(tid))
      -- dropped unread
      c:execute("CALL stream_sets()"):fetchone()
      gc_all()
      assert.equal(3, c:execute("SELECT 3"):scalar())
      -- the Connection closed between sets: back to the pool in sync, the same connection
      r = c:execute("CALL stream_sets()")
      for _ in r:iter() do end
      c:close()
      assert.equal(0, one.pool:checkedout())
      local c2 = one:connect()
      assert.equal(tid, c2:get_raw():thread_id())
      assert.equal(5, c2:execute("SELECT 5"):scalar())
      assert.equal(3, #c2:execute("CALL stream_sets()"):all())
      c2:close()
    end)

    it("an error in a later statement of the CALL is raised where the stream reaches it", function()
      local c = engine:connect()
      make_procs(c)
      for _, how in ipairs({"read", "nextset"}) do
        local r = c:execute("CALL stream_sets_boom()", nil, {stream_results = true})
        local err
        if how == "read" then
          local seen = {}
          err = H.error_of(function() for row in r:iter() do seen[#seen + 1] = row.a end end)
          assert.same({1, 2, 3}, seen)
        else
          assert.equal(1, r:fetchone().a)
          err = H.error_of(r.nextset, r)
        end
        assert.truthy(tostring(err):find("boom in the second statement", 1, true), how)
        assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
        c:rollback()
        assert.equal(1, c:execute("SELECT 1"):scalar(), how)
      end
      -- first() drops the rest as close() does: the error is not raised there
      local r = c:execute("CALL stream_sets_boom()", nil, {stream_results = true})
      assert.equal(1, r:first().a)
      assert.is_false(r:nextset())
      assert.equal(6, c:execute("SELECT 6"):scalar())
      c:close()
    end)
  end)

  describe("Session and scoped_session", function()
    it("Session:execute(sql, params, {stream_results = true}); commit closes it, the connection goes back clean", function()
      local Session = scoped.sessionmaker{bind = engine}
      local s = Session()
      s:execute("INSERT INTO stream_t VALUES (:id)", {id = 5})
      local r = s:execute("SELECT seq FROM seq_1_to_100000 WHERE seq > :n", {n = 0}, {stream_results = true})
      assert.equal(1, r:fetchone()[1])
      local tid = s:connection():get_raw():thread_id()
      assert.equal("InvalidRequestError", H.error_of(s.execute, s, "SELECT 1").kind)
      s:commit()
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM stream_t WHERE id = 5"):scalar())
      assert.is_true(trx_gone(tid))
      assert.equal(0, engine.pool:checkedout())
      -- the pooled connection is in sync: its next user runs statements
      local c = engine:connect()
      assert.equal(9, c:execute("SELECT 9"):scalar())
      c:close()
      -- a stream read to its end, then more statements, then close
      local n = 0
      for _ in s:execute("SELECT seq FROM seq_1_to_50", nil, {stream_results = true}):iter() do n = n + 1 end
      assert.equal(50, n)
      assert.equal(2, s:execute("SELECT 2"):scalar())
      s:execute("SELECT seq FROM seq_1_to_100000", nil, {stream_results = true}):fetchone()
      s:close()
      assert.equal(0, engine.pool:checkedout())
    end)

    it("scoped_session passes the execution options through", function()
      local S = scoped.scoped_session(scoped.sessionmaker{bind = engine})
      local r = S:execute("SELECT seq FROM seq_1_to_20", nil, {stream_results = true})
      assert.is_true(r.streaming)
      local sizes = {}
      for rows in r:partitions(8) do sizes[#sizes + 1] = #rows end
      assert.same({8, 8, 4}, sizes)
      r = S.execute("SELECT seq FROM seq_1_to_100000", nil, {yield_per = 10})
      assert.equal(10, r.yield_per)
      r:fetchone()
      S:rollback()
      assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
      assert.equal(3, S:execute("SELECT 3"):scalar())
      S.remove()
      assert.equal(0, engine.pool:checkedout())
    end)
  end)
end)
