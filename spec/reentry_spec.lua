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

-- Finalizers due at the next steps of the collector, so that they run
-- inside the statement that comes next (its allocations make those steps),
-- whatever the size of the heap: after garbage with finalizers was made,
-- the collector is stepped until the first of them has run (ran() says
-- how many ran so far); the rest are due then, some per step (up to about
-- a thousand in Lua 5.4's incremental mode, a few on LuaJIT). Returns what puts Lua 5.4's mode back
-- (its standalone interpreter runs the collector generational, where a
-- step would run them all at once).
local function due_finalizers(ran)
  local mode = not JIT and collectgarbage("incremental") or nil
  local before = ran()
  for _ = 1, 1000000 do
    collectgarbage("step", 0)
    if ran() > before then break end
  end
  return function() if mode and mode ~= "incremental" then collectgarbage(mode) end end
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

  -- Whether the raw connection that raw_of() names is inside a statement
  -- (the C busy mark): a finalizer may also run in the Lua code around the
  -- C call (on LuaJIT a trace compiled there counts as allocation), where
  -- close() or commit() are allowed and would end the statement's
  -- connection under it; those runs are counted apart, not re-entered.
  local function busy_now(raw_of)
    local raw = raw_of()
    if not raw then return false end
    local ok, err = pcall(raw._check_idle, raw, "probe")
    return not ok and is_busy_error(err)
  end

  local function finalizers_during(statement, reenter, raw_of)
    local tally = {busy = 0, ran = 0, other = {}, idle = 0, outside = 0}
    local armed = false -- only inside the statement: the first ones run before it
    local function fin()
      if not armed then tally.idle = tally.idle + 1 return end
      if not busy_now(raw_of) then tally.outside = tally.outside + 1 return end
      local ok, err = pcall(reenter)
      if ok then tally.ran = tally.ran + 1
      elseif is_busy_error(err) then tally.busy = tally.busy + 1
      else tally.other[#tally.other + 1] = tostring(type(err) == "table" and err.message or err) end
    end
    for _ = 1, 5 do
      collectgarbage(); collectgarbage()
      -- many: one step of Lua 5.4's collector may run a thousand finalizers
      for _ = 1, 4000 do with_finalizer(fin) end
      local restore = due_finalizers(function() return tally.idle end)
      armed = true
      local rows = statement()
      armed = false
      restore()
      assert.equal(N, #rows)
      assert.equal(N, rows[N][1])
      assert.equal("row-" .. N, rows[N].name)
      if tally.busy > 0 then break end
    end
    collectgarbage(); collectgarbage()
    assert.same({}, tally.other)
    assert.is_true(tally.busy > 0, "no finalizer ran inside the statement")
    return tally
  end

  it("finalizers running Session:execute while the same scoped_session reads rows get the busy error", function()
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    Session:execute("SELECT 1") -- the fast path holds a raw connection now
    local function session_raw()
      local s = Session()
      return s._raw or (s._conn and s._conn.raw)
    end
    finalizers_during(function() return Session:execute(BIG):all() end,
      function() return Session:execute("SELECT 1") end, session_raw)
    -- and a finalizer that commits or removes the session
    finalizers_during(function() return Session:execute(BIG):all() end,
      function() return Session:commit() end, session_raw)
    assert.equal(2, Session:execute("SELECT 2"):scalar())
    Session:commit()
    Session:remove()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("finalizers using a Connection or a raw connection while it reads rows get the busy error", function()
    local conn = engine:connect()
    local function conn_raw() return conn.raw end
    finalizers_during(function() return conn:execute(BIG):all() end,
      function() return conn:execute("SELECT 1") end, conn_raw)
    finalizers_during(function() return conn:exec_driver_sql(BIG):all() end,
      function() return conn:close() end, conn_raw)
    assert.is_false(conn.closed)
    conn:close()
    local raw = H.raw()
    finalizers_during(function() return raw:execute(BIG):all() end,
      function() return raw:close() end, function() return raw end)
    assert.equal(1, raw:execute("SELECT 1"):scalar())
    raw:close()
  end)

  -- Finalizers that raise. LuaJIT (Debian's 2.1-20220915) propagates a
  -- finalizer's error out of whatever allocation ran it, and such errors
  -- leave its own state unfit: thrown out of JIT-compiled code its unwinder
  -- crashes (SIGSEGV in _Unwind_RaiseException, with 7354c91's core too),
  -- and after a few hundred of them later finalizers may not run (in one
  -- suite run the garbage-collection endings of tx_state_spec then failed).
  -- So on LuaJIT these scenarios run in a process of their own, JIT off;
  -- on Lua 5.4, whose finalizer errors never propagate, in this one. Each
  -- scenario is a chunk that returns counts.
  local function scenario(chunk, rows)
    if not JIT then return assert(load(chunk))(rows) end
    local p = require("support.proc").spawn("jit.off()\n" ..
      "local r = (function(...)\n" .. chunk .. "\nend)(" .. rows .. ")\n" ..
      "local out = {}\nfor k, v in pairs(r) do out[#out + 1] = k .. '=' .. tostring(v) end\n" ..
      "print('RESULT ' .. table.concat(out, ' '))\n")
    local out, status = p:finish(240)
    local line = out:match("RESULT ([^\n]*)")
    assert(status == 0 and line, "the scenario's process failed (" .. tostring(status) .. "):\n" .. out)
    local r = {}
    for k, v in line:gmatch("(%w+)=(%w+)") do r[k] = tonumber(v) or v end
    return r
  end

  -- shared by the chunks: the connection's busy error, objects with finalizers
  local PRELUDE = [[
    local scoped = require "scoped"
    local H = require "helper"
    local N = ...
    local JIT = rawget(_G, "jit") ~= nil
    local function with_finalizer(fn)
      if JIT then
        local p = newproxy(true)
        getmetatable(p).__gc = fn
        return p
      end
      return setmetatable({}, {__gc = fn})
    end
    local function busy(err)
      return type(err) == "table" and err.kind == "InvalidRequestError"
        and tostring(err.message):find("This connection is busy", 1, true) ~= nil
    end
    if JIT then collectgarbage("setpause", 100) end -- its own process: cycles end often
  ]]

  it("an unprotected finalizer's busy error: Lua 5.4 warns, LuaJIT raises it from the statement; no crash either way", function()
    local r = scenario(PRELUDE .. [[
      local engine = scoped.create_engine(H.url, {pool_size = 2, max_overflow = 0, pool_timeout = 5})
      local raw = engine.pool._cpool:checkout()
      local BIG = "SELECT seq, CONCAT('row-', seq) AS name FROM seq_1_to_" .. N
      local completed, raised, bad, usable = 0, 0, 0, 0
      -- unprotected: inside a statement on raw it raises the busy error
      local function fin() raw:execute("SELECT 1") end
      local function read() return raw:execute(BIG):all() end
      local function seven() return raw:execute("SELECT 7"):scalar() end
      for _ = 1, 10 do
        for _ = 1, 300 do pcall(with_finalizer, fin) end
        local ok, res = pcall(read)
        if ok and #res == N then completed = completed + 1
        elseif not ok and busy(res) then raised = raised + 1
        else bad = bad + 1 end
        -- the finalizers still pending run now, the connection idle: they succeed
        pcall(collectgarbage); pcall(collectgarbage)
        local ok7, v = pcall(seven)
        if ok7 and v == 7 then usable = usable + 1 end
      end
      collectgarbage(); collectgarbage()
      raw:close()
      return {completed = completed, raised = raised, bad = bad, usable = usable,
              checkedout = engine.pool:checkedout()}
    ]], N)
    assert.equal(0, r.bad)
    assert.equal(10, r.usable) -- after each round the connection was in sync and usable
    assert.equal(10, r.completed + r.raised)
    assert.equal(0, r.checkedout)
    if not JIT then assert.equal(0, r.raised) end -- Lua 5.4: the statement always completes
  end)

  it("a finalizer's error during a checkout (LuaJIT raises it from the allocation) loses no pool slot", function()
    local r = scenario(PRELUDE .. [[
      local e = scoped.create_engine(H.url, {pool_size = 2, max_overflow = 0, pool_timeout = 0.2})
      local Session = scoped.scoped_session(scoped.sessionmaker{bind = e})
      -- any allocation may raise while such finalizers are pending: everything
      -- in the loop allocates inside pcall, or not at all
      local raised, other, armed, first_other = 0, 0, true, nil
      local function fin() if armed then error("a finalizer's own error", 0) end end
      local function unit()
        local c = e:connect()
        c:close()
        local raw = e.pool._cpool:try_checkout()
        if raw then raw:close() end
        Session:execute("SELECT 1")
        Session:remove()
      end
      for _ = 1, 400 do
        for _ = 1, 20 do pcall(with_finalizer, fin) end
        local ok, err = pcall(unit)
        if not ok then
          if err == "a finalizer's own error" then raised = raised + 1
          else other = other + 1; first_other = first_other or tostring(type(err) == "table" and err.kind .. ": " .. tostring(err.message) or err) end
          pcall(Session.remove)
        end
      end
      armed = false -- the ones still pending must not raise any more
      collectgarbage(); collectgarbage()
      local both = pcall(function()
        local a, b = e:connect(), e:connect() -- both connections can be had at once
        assert(a:scalar("SELECT 1") == 1 and b:scalar("SELECT 1") == 1)
        a:close(); b:close()
      end)
      return {raised = raised, other = other, checkedout = e.pool:checkedout(), both = both and 1 or 0,
              firstother = (first_other or "none"):gsub("[^%w]", "_")}
    ]], N)
    assert.equal(0, r.other, r.firstother) -- no TimeoutError: no slot was lost
    assert.equal(0, r.checkedout)
    assert.equal(1, r.both)
    if JIT then assert.is_true(r.raised > 0, "no finalizer error came through (the check did not run)") end
  end)

  it("an event hook run by the collector inside a statement (a checkin listener) gets the busy error", function()
    local conn = engine:connect()
    local tally = {busy = 0, calls = 0}
    scoped.event.listen(engine, "checkin", function()
      tally.calls = tally.calls + 1
      local ok, err = pcall(conn.execute, conn, "SELECT 1")
      if not ok and is_busy_error(err) then tally.busy = tally.busy + 1 end
    end)
    local dummies = 0
    local function dummy() dummies = dummies + 1 end
    for _ = 1, 5 do
      collectgarbage(); collectgarbage() -- the last round's are back (the pool has 8)
      -- connections dropped without close(): the collector gives them back,
      -- firing the engine's checkin listeners; between other finalizers, so
      -- that some are still due when the statement starts, whatever order
      -- the collector calls them in
      for _ = 1, 3000 do with_finalizer(dummy) end
      for _ = 1, 6 do engine:connect():execute("SELECT 1") end
      for _ = 1, 3000 do with_finalizer(dummy) end
      local restore = due_finalizers(function() return dummies end)
      assert.equal(N, #conn:execute(BIG):all())
      restore()
      if tally.busy > 0 then break end
    end
    collectgarbage(); collectgarbage()
    assert.is_true(tally.busy > 0, "no listener ran inside the statement")
    assert.equal(1, conn:execute("SELECT 1"):scalar())
    conn:close()
    assert.equal(0, engine.pool:checkedout())
  end)
end)
