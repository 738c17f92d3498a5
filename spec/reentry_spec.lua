-- Re-entering a connection (issue 17, finding 3). A statement runs Lua code
-- while it holds the connection: its params table's metamethods while the
-- statement is rendered, and the finalizers the garbage collector runs
-- while rows are built. Such code using the same connection again (a
-- finalizer running a statement through the same scoped_session, a params
-- __index that closes the connection, commits the session or runs another
-- statement) freed the result being read (free(): double free detected),
-- wrote into freed memory or crashed. Now the connection is busy for the
-- whole call: every re-entrant use raises InvalidRequestError ("This
-- connection is busy: ...") and changes nothing; the outer statement
-- completes; a mark left by an error half-way is dropped when next met.
local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"

local JIT = rawget(_G, "jit") ~= nil

-- An object whose finalizer calls fn (a table with __gc on Lua 5.4, a
-- newproxy userdata on LuaJIT, where tables have no __gc).
local function with_finalizer(fn)
  if JIT then
    local p = newproxy(true)
    getmetatable(p).__gc = fn
    return p
  end
  return setmetatable({}, {__gc = fn})
end

-- The collector made eager (incremental, a new cycle as soon as one ends:
-- Lua 5.4's standalone interpreter runs it generational), so that cycles
-- end, and finalizers run, inside a statement whatever the size of the
-- heap; returns what puts the settings back.
local function eager_gc()
  if JIT then
    local pause = collectgarbage("setpause", 100)
    return function() collectgarbage("setpause", pause) end
  end
  local mode = collectgarbage("incremental", 100, 200)
  return function()
    collectgarbage("incremental", 200, 100) -- Lua 5.4's defaults
    collectgarbage(mode)
  end
end

-- For the tests whose finalizers raise: LuaJIT 2.1 (Debian's 2.1-20220915)
-- propagates a finalizer's error out of the allocation that ran it, and when
-- that allocation is in JIT-compiled code its unwinder crashes (SIGSEGV in
-- _Unwind_RaiseException, with or without scoped loaded: seen with 7354c91
-- too). Those tests run with the JIT off; returns what turns it back on.
local function interpreter_only()
  if not JIT then return function() end end
  jit.off()
  jit.flush()
  return function() jit.on() end
end

local function is_busy_error(err)
  return type(err) == "table" and err.kind == "InvalidRequestError"
    and type(err.message) == "string" and err.message:find("This connection is busy", 1, true) ~= nil
end

local function assert_busy(err, what)
  assert(is_busy_error(err), what .. ": expected the busy error, got " ..
    (type(err) == "table" and tostring(err.kind) .. ": " .. tostring(err.message) or tostring(err)))
end

-- params whose first lookup runs action() (protected) and records what it
-- raised; the lookup then answers 1
local function params_running(action)
  local seen = {}
  local params = setmetatable({}, {__index = function(_, k)
    if not seen.ran then
      seen.ran = true
      seen.ok, seen.err = pcall(action)
    end
    return 1
  end})
  return params, seen
end

describe("re-entering a connection", function()
  local engine
  setup(function()
    local c = H.raw()
    c:execute("CREATE TABLE IF NOT EXISTS reentry_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    c:execute("DELETE FROM reentry_t")
    c:commit()
    c:close()
  end)
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 8, max_overflow = 0, pool_timeout = 5})
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    engine:dispose()
  end)
  teardown(function()
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS reentry_t")
    c:close()
  end)

  it("every call on the connection from a params __index is refused; the statement completes", function()
    local function actions(raw)
      return {
        {"execute", function() return raw:execute("SELECT 2") end},
        {"execute with params", function() return raw:execute("SELECT :x", {x = 2}) end},
        {"exec_driver_sql", function() return raw:exec_driver_sql("SELECT 2") end},
        {"executemany", function() return raw:executemany("INSERT INTO reentry_t VALUES (:id)", {{id = 1}}) end},
        {"render", function() return raw:render("SELECT :x", {x = 2}) end},
        {"commit", function() return raw:commit() end},
        {"rollback", function() return raw:rollback() end},
        {"finish", function() return raw:finish(true) end},
        {"close", function() return raw:close() end},
        {"close(rollback)", function() return raw:close(true) end},
        {"ping", function() return raw:ping() end},
        {"reset", function() return raw:reset() end},
        {"_check_idle", function() return raw:_check_idle() end},
        {"core.lease", function() return core.lease(raw) end},
        {"__gc by hand", function() return getmetatable(raw).__gc(raw) end},
      }
    end
    for _, pooled in ipairs({false, true}) do
      local raw = pooled and engine.pool._cpool:checkout() or H.raw()
      local tid = raw:thread_id()
      for _, a in ipairs(actions(raw)) do
        local what = a[1] .. (pooled and " (pooled)" or " (raw_connect)")
        local params, seen = params_running(a[2])
        local r = raw:execute("SELECT :a AS a, CONNECTION_ID() AS id", params)
        assert.is_true(seen.ran, what)
        assert.is_false(seen.ok, what .. ": was allowed")
        assert_busy(seen.err, what)
        local row = r:first()
        assert.equal(1, row.a, what)
        assert.equal(tid, row.id, what)
        -- nothing changed: open, not leased, not invalidated, usable
        assert.is_false(raw:closed(), what)
        assert.is_false(raw:is_invalidated(), what)
        assert.equal(2, raw:execute("SELECT 2"):scalar(), what)
      end
      -- what may be read while busy is allowed
      local params, seen = params_running(function()
        return {raw:closed(), raw:in_transaction(), raw:thread_id(), raw:is_invalidated(), tostring(raw)}
      end)
      raw:execute("SELECT :a", params)
      assert.is_true(seen.ok, tostring(seen.err))
      raw:close()
    end
    assert.equal(0, core.lease_count())
  end)

  it("an error escaping the statement leaves the connection usable (the busy mark is dropped)", function()
    local raw = engine.pool._cpool:checkout()
    -- the busy error itself, unprotected in __index, is the statement's error
    local err = H.error_of(raw.execute, raw, "SELECT :a",
      setmetatable({}, {__index = function() raw:close() end}))
    assert_busy(err, "close in __index, unprotected")
    assert.is_false(raw:closed())
    assert.equal(1, raw:execute("SELECT 1"):scalar())
    -- a metamethod's own error, a missing bind, a wrong value: the same
    err = H.error_of(raw.execute, raw, "SELECT :a", setmetatable({}, {__index = function() error("boom", 0) end}))
    assert.equal("boom", err)
    assert.equal("ArgumentError", H.error_of(raw.execute, raw, "SELECT :a", {}).kind)
    assert.equal("ArgumentError", H.error_of(raw.execute, raw, "SELECT :a", {a = {{}}}).kind)
    assert.equal("ArgumentError", H.error_of(raw.execute, raw, 42).kind)
    -- from a coroutine that dies of it
    local co = coroutine.create(function() return raw:execute("SELECT :a", setmetatable({}, {
      __index = function() error("dies", 0) end})) end)
    assert.is_false((coroutine.resume(co)))
    assert.equal("dead", coroutine.status(co))
    -- every call works afterwards, close included
    assert.equal(3, raw:execute("SELECT :x", {x = 3}):scalar())
    raw:commit()
    raw:ping()
    raw:close()
    assert.is_true(raw:closed())
    assert.equal(0, engine.pool:checkedout())
  end)

  it("a coroutine resumed from inside the statement finds the connection busy too", function()
    local raw = engine.pool._cpool:checkout()
    local co_err
    local params = setmetatable({}, {__index = function()
      local co = coroutine.create(function() return raw:execute("SELECT 2") end)
      local ok, err = coroutine.resume(co)
      co_err = not ok and err or "ran"
      return 1
    end})
    assert.equal(1, raw:execute("SELECT :a", params):scalar())
    assert_busy(co_err, "a statement from a coroutine resumed in __index")
    raw:close()
  end)

  it("a Session's commit, rollback, close and a scoped_session's remove from __index: refused, the session unchanged", function()
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    for _, a in ipairs({
      {"commit", function() return Session:commit() end},
      {"rollback", function() return Session:rollback() end},
      {"close", function() return Session().close(Session()) end},
      {"execute", function() return Session:execute("SELECT 2") end},
    }) do
      Session:execute("INSERT INTO reentry_t VALUES (:id)", {id = 10})
      local params, seen = params_running(a[2])
      assert.equal(1, Session:execute("SELECT :a", params):scalar(), a[1])
      assert_busy(seen.err, "Session:" .. a[1])
      assert.is_true(Session:in_transaction(), a[1])
      -- the unit of work goes on and commits as if nothing had happened
      Session:commit()
      assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM reentry_t WHERE id = 10"):scalar(), a[1])
      H.observer():execute("DELETE FROM reentry_t")
      H.observer():commit()
    end
    Session:remove()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("a Connection's commit, rollback, close, invalidate from __index: refused, the Connection unchanged", function()
    for _, name in ipairs({"commit", "rollback", "close", "invalidate", "begin_nested"}) do
      local conn = engine:connect()
      conn:execute("INSERT INTO reentry_t VALUES (20)")
      local params, seen = params_running(function() return conn[name](conn) end)
      assert.equal(1, conn:execute("SELECT :a", params):scalar(), name)
      assert_busy(seen.err, "Connection:" .. name)
      assert.is_false(conn.closed, name)
      assert.is_true(conn:in_transaction(), name)
      assert.is_false(conn:get_raw():is_invalidated(), name)
      conn:commit()
      assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM reentry_t WHERE id = 20"):scalar(), name)
      H.observer():execute("DELETE FROM reentry_t")
      H.observer():commit()
      conn:close()
    end
  end)

  -- the issue's case: finalizers run by the collector while the rows of a
  -- big result are built, each running a statement through the same
  -- scoped_session (free(): double free detected on 7354c91)
  -- (fewer rows under ASan and valgrind: SCOPED_SLOW)
  local N = os.getenv("SCOPED_SLOW") and 10000 or 40000
  local BIG = "SELECT seq, CONCAT('row-', seq) AS name FROM seq_1_to_" .. N

  local function finalizers_during(statement, reenter)
    local tally = {busy = 0, ran = 0, other = {}}
    local function make(n)
      for _ = 1, n do
        with_finalizer(function()
          local ok, err = pcall(reenter)
          if ok then tally.ran = tally.ran + 1
          elseif is_busy_error(err) then tally.busy = tally.busy + 1
          else tally.other[#tally.other + 1] = tostring(type(err) == "table" and err.message or err) end
        end)
      end
    end
    -- rounds until the collector has run some of them inside the statement
    local restore = eager_gc()
    for _ = 1, 20 do
      make(500)
      local rows = statement()
      assert.equal(N, #rows)
      assert.equal(N, rows[N][1])
      assert.equal("row-" .. N, rows[N].name)
      if tally.busy > 0 then break end
    end
    restore()
    collectgarbage(); collectgarbage()
    assert.same({}, tally.other)
    assert.is_true(tally.busy > 0, "no finalizer ran inside the statement")
    return tally
  end

  it("finalizers running Session:execute while the same scoped_session reads rows get the busy error", function()
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    Session:execute("SELECT 1") -- the fast path holds a raw connection now
    finalizers_during(function() return Session:execute(BIG):all() end,
      function() return Session:execute("SELECT 1") end)
    -- and a finalizer that commits or removes the session
    finalizers_during(function() return Session:execute(BIG):all() end,
      function() return Session:commit() end)
    assert.equal(2, Session:execute("SELECT 2"):scalar())
    Session:commit()
    Session:remove()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("finalizers using a Connection or a raw connection while it reads rows get the busy error", function()
    local conn = engine:connect()
    finalizers_during(function() return conn:execute(BIG):all() end,
      function() return conn:execute("SELECT 1") end)
    finalizers_during(function() return conn:exec_driver_sql(BIG):all() end,
      function() return conn:close() end)
    assert.is_false(conn.closed)
    conn:close()
    local raw = H.raw()
    finalizers_during(function() return raw:execute(BIG):all() end,
      function() return raw:close() end)
    assert.equal(1, raw:execute("SELECT 1"):scalar())
    raw:close()
  end)

  it("an unprotected finalizer's busy error: Lua 5.4 warns, LuaJIT raises it from the statement; no crash either way", function()
    local jit_on = interpreter_only()
    local raw = engine.pool._cpool:checkout()
    local outcomes = {}
    for _ = 1, 10 do
      for _ = 1, 300 do with_finalizer(function() raw:execute("SELECT 1") end) end
      local ok, res = pcall(function() return raw:execute(BIG):all() end)
      if ok then
        assert.equal(N, #res)
        outcomes.completed = true
      else
        assert_busy(res, "the error a finalizer raised")
        outcomes.raised = true
      end
      -- whatever happened, the connection is in sync and usable (first the
      -- finalizers still pending run, the connection idle: they succeed)
      collectgarbage(); collectgarbage()
      assert.equal(7, raw:execute("SELECT 7"):scalar())
    end
    collectgarbage(); collectgarbage()
    jit_on()
    assert.equal(7, raw:execute("SELECT 7"):scalar())
    raw:close()
    assert.equal(0, engine.pool:checkedout())
    if not JIT then assert.is_nil(outcomes.raised) end
  end)

  it("a finalizer's error during a checkout (LuaJIT raises it from the allocation) loses no pool slot", function()
    local e = scoped.create_engine(H.url, {pool_size = 2, max_overflow = 0, pool_timeout = 0.2})
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = e})
    local jit_on = interpreter_only()
    -- on LuaJIT any allocation may raise while such finalizers are pending:
    -- everything in the loop allocates inside pcall, or not at all
    local raised, other, armed = 0, 0, true
    local function fin() if armed then error("a finalizer's own error", 0) end end
    local function unit()
      local c = e:connect()
      c:close()
      local raw = e.pool._cpool:try_checkout()
      if raw then raw:close() end
      Session:execute("SELECT 1")
      Session:remove()
    end
    for _ = 1, 300 do
      for _ = 1, 20 do pcall(with_finalizer, fin) end
      local ok, err = pcall(unit)
      if not ok then
        if err == "a finalizer's own error" then raised = raised + 1 else other = other + 1 end
        pcall(Session.remove)
      end
    end
    armed = false -- the ones still pending must not raise outside this test
    collectgarbage(); collectgarbage()
    jit_on()
    assert.equal(0, other) -- no TimeoutError: no slot was lost
    assert.equal(0, e.pool:checkedout())
    -- both connections can be had at once
    local a, b = e:connect(), e:connect()
    assert.equal(1, a:scalar("SELECT 1"))
    assert.equal(1, b:scalar("SELECT 1"))
    a:close(); b:close()
    e:dispose()
    if JIT then assert.is_true(raised > 0, "no finalizer error came through (the check did not run)") end
  end)

  it("an event hook run by the collector inside a statement (a checkin listener) gets the busy error", function()
    local conn = engine:connect()
    local tally = {busy = 0}
    scoped.event.listen(engine, "checkin", function()
      local ok, err = pcall(conn.execute, conn, "SELECT 1")
      if not ok and is_busy_error(err) then tally.busy = tally.busy + 1 end
    end)
    local restore = eager_gc()
    for _ = 1, 20 do
      collectgarbage(); collectgarbage() -- the last round's are back (the pool has 8)
      -- connections dropped without close(): the collector gives them back,
      -- firing the engine's checkin listeners
      for _ = 1, 6 do engine:connect():execute("SELECT 1") end
      assert.equal(N, #conn:execute(BIG):all())
      if tally.busy > 0 then break end
    end
    restore()
    collectgarbage(); collectgarbage()
    assert.is_true(tally.busy > 0, "no listener ran inside the statement")
    assert.equal(1, conn:execute("SELECT 1"):scalar())
    conn:close()
    assert.equal(0, engine.pool:checkedout())
  end)
end)
