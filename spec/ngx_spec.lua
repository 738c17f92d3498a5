-- The pieces of the OpenResty support that need no nginx: the owned thread
-- registry, leases (csrc/lua/llease.c) and the offload path of scoped.ngx over
-- a stand-in for ngx.run_worker_thread. The real nginx runs are
-- spec/openresty/ (run.sh, from make test).
local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"

local unpack = table.unpack or unpack

describe("core.thread_registry()", function()
  it("keeps one value per coroutine; clear() returns what it cleared", function()
    local get, set, clear = core.thread_registry()
    assert.is_nil(clear()) -- nothing set: nothing cleared
    set("main")
    local inner = coroutine.wrap(function()
      set("co")
      return get(), clear(), get()
    end)
    local seen, cleared, after = inner()
    assert.equal("co", seen)
    assert.equal("co", cleared)
    assert.is_nil(after)
    assert.equal("main", get()) -- the other coroutine's clear left this one alone
    assert.equal("main", clear())
    assert.is_nil(get())
  end)
end)

describe("core.thread_registry(true)", function()
  it("returns the value only to the owner that set it, else nil and the stale value", function()
    local get, set, clear = core.thread_registry(true)
    local a, b = {}, {}
    assert.is_nil(get(a))
    set("v1", a)
    assert.equal("v1", get(a))
    local v, stale = get(b)
    assert.is_nil(v)
    assert.equal("v1", stale)
    assert.equal("v1", get(a)) -- get changes nothing
    set("v2", b)
    assert.equal("v2", get(b))
    clear()
    assert.is_nil(get(b))
    assert.is_nil(select(2, get(b)))
  end)

  it("nil owners match each other; set(nil) forgets value and owner", function()
    local get, set = core.thread_registry(true)
    set("x", nil)
    assert.equal("x", get(nil))
    assert.equal("x", select(2, get({})))
    set(nil, {})
    assert.is_nil(get(nil))
    assert.is_nil(select(2, get(nil)))
  end)

  it("is per coroutine", function()
    local get, set = core.thread_registry(true)
    local owner = {}
    set("main", owner)
    local inner = coroutine.wrap(function()
      local before = get(owner)
      set("co", owner)
      return before, get(owner)
    end)
    local before, mine = inner()
    assert.is_nil(before)
    assert.equal("co", mine)
    assert.equal("main", get(owner))
  end)

  it("holds owners weakly: a collected owner makes the value stale", function()
    local get, set, _, _, owners = core.thread_registry(true)
    set("v", {})
    collectgarbage(); collectgarbage()
    assert.is_nil(next(owners))
    local v, stale = get({})
    assert.is_nil(v)
    assert.equal("v", stale)
  end)

  it("checks its argument", function()
    assert.equal("ArgumentError", H.error_of(core.thread_registry, "yes").kind)
    assert.equal(3, select("#", core.thread_registry(false)) - 1) -- the plain one: get, set, clear, map
  end)
end)

describe("leases", function()
  local engine
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 3, max_overflow = 0, pool_timeout = 2})
  end)
  after_each(function()
    collectgarbage(); collectgarbage()
    engine:dispose()
  end)

  local function checkout()
    return engine.pool._cpool:checkout()
  end

  it("moves a connection out and back, its transaction with it", function()
    local raw = checkout()
    raw:execute("CREATE TEMPORARY TABLE lease_t (x INT)")
    raw:execute("INSERT INTO lease_t VALUES (1)")
    local tid = raw:thread_id()
    local lease = core.lease(raw)
    assert.is_true(raw:closed())
    assert.is_false(lease:busy())
    assert.equal(1, core.lease_count())
    -- another "state": borrow by number, use, give back
    local other = core.lease_borrow(lease:id())
    assert.is_true(lease:busy())
    assert.equal(tid, other:thread_id())
    assert.is_true(other:in_transaction())
    other:execute("INSERT INTO lease_t VALUES (2)")
    core.lease_return(lease:id(), other)
    assert.is_true(other:closed())
    assert.is_false(lease:busy())
    lease:restore(raw)
    assert.equal(0, core.lease_count())
    assert.is_false(raw:closed())
    assert.equal(2, raw:execute("SELECT COUNT(*) FROM lease_t"):scalar())
    assert.equal(1, engine.pool:checkedout())
    raw:close()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("refuses what would split or lose a connection", function()
    local raw = checkout()
    local lease = core.lease(raw)
    assert.equal("ResourceClosedError", H.error_of(core.lease, raw).kind)
    local other = core.lease_borrow(lease:id())
    assert.equal("InvalidRequestError", H.error_of(core.lease_borrow, lease:id()).kind)
    local fresh = checkout()
    assert.equal("ArgumentError", H.error_of(lease.restore, lease, fresh).kind)
    local closed = engine.pool._cpool:checkout()
    closed:close()
    assert.equal("InvalidRequestError", H.error_of(lease.restore, lease, closed).kind) -- busy
    core.lease_return(lease:id(), other)
    assert.equal("InvalidRequestError", H.error_of(core.lease_return, lease:id(), other).kind)
    lease:restore(raw)
    assert.equal("InvalidRequestError", H.error_of(lease.restore, lease, raw).kind)
    assert.equal("InvalidRequestError", H.error_of(core.lease_borrow, lease:id()).kind)
    assert.equal("ArgumentError", H.error_of(core.lease_borrow, "1").kind)
    assert.equal("ArgumentError", H.error_of(core.lease_borrow, 0.5).kind)
    assert.equal("ArgumentError", H.error_of(core.lease, {}).kind)
    assert.equal("ArgumentError", H.error_of(lease.id, {}).kind)
    raw:close(); fresh:close()
  end)

  it("a lease collected while parked gives the connection back, rolled back", function()
    local raw = checkout()
    local tid = raw:thread_id()
    raw:execute("CREATE TABLE IF NOT EXISTS lease_gc (x INT) ENGINE=InnoDB")
    raw:execute("INSERT INTO lease_gc VALUES (1)") -- left open
    core.lease(raw)
    raw = nil
    collectgarbage(); collectgarbage()
    assert.equal(0, engine.pool:checkedout())
    assert.equal(0, core.lease_count())
    local again = checkout()
    assert.equal(tid, again:thread_id())
    assert.equal(0, again:execute("SELECT COUNT(*) FROM lease_gc"):scalar())
    again:execute("DROP TABLE lease_gc")
    again:close()
  end)

  it("a lease collected while borrowed: the borrower returns the connection to the pool", function()
    local raw = checkout()
    local lease = core.lease(raw)
    local id = lease:id()
    local other = core.lease_borrow(id)
    lease = nil
    collectgarbage(); collectgarbage()
    assert.equal(1, engine.pool:checkedout()) -- still with the borrower
    assert.equal(1, other:execute("SELECT 1"):scalar())
    core.lease_return(id, other)
    assert.equal(0, engine.pool:checkedout())
    assert.equal(0, core.lease_count())
    assert.equal("InvalidRequestError", H.error_of(core.lease_borrow, id).kind)
  end)

  -- issue 17, finding 8: the borrower's RawConnection (in a pool thread's
  -- lua_State) cannot hold the worker's pool userdata; the lease's slot
  -- holds the pool itself, so lease_return never checks into a freed pool
  it("a lease keeps its pool alive: engine and lease collected while borrowed, then given back", function()
    local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
    local raw = e.pool._cpool:checkout()
    local tid = raw:thread_id()
    local lease = core.lease(raw)
    local id = lease:id()
    local borrowed = core.lease_borrow(id)
    -- the request that lent the connection is gone, and its engine with it
    e, raw, lease = nil, nil, nil
    collectgarbage(); collectgarbage()
    -- the thread goes on with the connection, then gives it back
    assert.equal(1, borrowed:execute("SELECT 1"):scalar())
    core.lease_return(id, borrowed)
    assert.equal(0, core.lease_count())
    -- the slot's reference was the pool's last: the pool is gone now, and
    -- the connection it got back was closed with it
    collectgarbage(); collectgarbage()
    assert.is_true(H.connection_gone(tid))
  end)

  it("a lease keeps its pool alive: the borrowed RawConnection closed instead of given back", function()
    local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
    local raw = e.pool._cpool:checkout()
    local tid = raw:thread_id()
    local lease = core.lease(raw)
    local id = lease:id()
    local borrowed = core.lease_borrow(id)
    e, raw, lease = nil, nil, nil
    collectgarbage(); collectgarbage()
    borrowed:close() -- checks in to the pool the slot keeps alive
    assert.is_true(H.connection_alive(tid))
    core.lease_return(id, borrowed) -- the slot goes, and the pool with it
    assert.equal(0, core.lease_count())
    assert.is_true(H.connection_gone(tid))
  end)
end)

-- scoped.ngx loaded against a stand-in `ngx` whose run_worker_thread runs
-- the function in this lua_State, passing arguments and results through a
-- copy that drops metatables and refuses functions, as nginx's does.
describe("scoped.ngx offload (stand-in ngx)", function()
  local glue, engine, Session, calls, fake

  local function copy(v, seen)
    local t = type(v)
    if t == "table" then
      seen = seen or {}
      assert(not seen[v], "cyclic table")
      seen[v] = true
      local out = {}
      for k, x in pairs(v) do out[copy(k, seen)] = copy(x, seen) end
      seen[v] = nil
      return out
    end
    assert(t ~= "function" and t ~= "thread" and (t ~= "userdata" or v == core.null),
      "cannot copy a " .. t)
    return v
  end

  setup(function()
    fake = {
      get_phase = function() return "content" end,
      sleep = function() end,
      log = function() end,
      INFO = 7, WARN = 5, ERR = 4,
    }
    function fake.run_worker_thread(pool, mod, fn, ...)
      assert.equal("tp", pool)
      calls = calls + 1
      local args = copy({n = select("#", ...), ...})
      local res = {pcall(require(mod)[fn], unpack(args, 1, args.n))}
      if not res[1] then return false, tostring(res[2]) end
      return true, copy(res[2]), copy(res[3])
    end
    package.loaded["scoped.ngx"] = nil
    rawset(_G, "ngx", fake)
    glue = require "scoped.ngx"
    assert.is_true(glue.active)
    engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_timeout = 1,
      offload = "tp", pool_wait = function() end})
    -- what the plug-in's install() has every engine go through under nginx
    -- (installed for good, it would change every later spec's engines)
    glue.attach(engine)
    rawset(_G, "ngx", nil)
    package.loaded["scoped.ngx"] = nil
    Session = scoped.sessionmaker{bind = engine}
  end)
  teardown(function()
    collectgarbage(); collectgarbage()
    engine:dispose()
  end)
  before_each(function() calls = 0 end)

  it("runs each statement through run_worker_thread, one connection per transaction", function()
    local s = Session()
    local c1 = s:scalar("SELECT CONNECTION_ID()")
    s:execute("CREATE TEMPORARY TABLE off_t (id INT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10), n INT NULL)")
    local res = s:execute("INSERT INTO off_t (v, n) VALUES ('a', 1), ('b', NULL)")
    assert.equal(2, res.rowcount)
    assert.equal(1, res.lastrowid)
    assert.equal(c1, s:scalar("SELECT CONNECTION_ID()"))
    assert.equal(4, calls)
    assert.is_true(s:in_transaction())
    local raw = s:connection().raw -- the worker's stand-in for the RawConnection
    assert.is_nil(raw:commit())     -- RawConnection:commit, in the thread too
    assert.equal(5, calls)
    assert.is_false(raw:in_transaction())
    s:rollback()
    assert.equal(0, engine.pool:checkedout())
    assert.equal(0, core.lease_count())
    s:close()
  end)

  it("serves the Result API from the plain tables", function()
    local s = Session()
    local res = s:execute("SELECT 1 AS a, 'x' AS b, NULL AS c UNION ALL SELECT 2, 'y', 3")
    assert.is_true(res.returns_rows)
    assert.same({"a", "b", "c"}, res:keys())
    local row = res:fetchone()
    assert.equal(1, row.a)
    assert.equal("x", row[2])
    assert.equal(scoped.null, row.c)
    assert.same({"a", "b", "c"}, row._fields)
    assert.same({a = 1, b = "x", c = scoped.null}, row:_asdict())
    local rest = res:fetchall()
    assert.equal(1, #rest)
    assert.equal(3, rest[1].c)
    assert.is_nil(res:fetchone())
    assert.same({2, 4}, s:execute("SELECT 2 UNION ALL SELECT 4"):scalars():all())
    assert.same({{v = 7}}, s:execute("SELECT 7 AS v"):mappings():all())
    assert.equal(7, s:scalar("SELECT 7"))
    assert.is_nil(s:scalar("SELECT 1 FROM DUAL WHERE 1 = 0"))
    assert.equal("NoResultFound", H.error_of(function() s:execute("SELECT 1 FROM DUAL WHERE 1 = 0"):one() end).kind)
    assert.equal("MultipleResultsFound",
      H.error_of(function() s:execute("SELECT 1 UNION ALL SELECT 2"):one() end).kind)
    local many = s:execute("SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3")
    assert.equal(2, #many:fetchmany(2))
    assert.equal(1, #many:fetchmany(5))
    assert.equal("ArgumentError", H.error_of(many.fetchmany, many, -1).kind)
    local n = 0
    for _ in s:execute("SELECT 1 UNION ALL SELECT 2"):iter() do n = n + 1 end
    assert.equal(2, n)
    local ins = s:execute("DO 1")
    assert.is_false(ins.returns_rows)
    assert.equal("ResourceClosedError", H.error_of(ins.fetchone, ins).kind)
    local closed = s:execute("SELECT 1")
    closed:close()
    assert.equal("ResourceClosedError", H.error_of(closed.fetchall, closed).kind)
    s:close()
  end)

  it("builds its Result with the C code every Result comes from", function()
    local s = Session()
    local res = s:execute("SELECT 1 AS a, 2 AS a")
    local plain = scoped.create_engine(H.url)
    local conn = plain:connect()
    local direct = conn:execute("SELECT 1 AS a, 2 AS a")
    assert.equal(getmetatable(direct), getmetatable(res))
    local row = res:fetchone()
    assert.equal(getmetatable(direct:fetchone()), getmetatable(row)) -- one row metatable per names
    assert.equal(1, row.a)
    assert.equal(tostring(direct):match("^%a+"), tostring(res):match("^%a+"))
    conn:close()
    plain:dispose()
    s:close()
  end)

  it("keeps several result sets (a CALL)", function()
    local s = Session()
    s:execute("CREATE PROCEDURE IF NOT EXISTS off_two() BEGIN SELECT 1 AS one; SELECT 2 AS two, 3 AS three; END")
    local res = s:execute("CALL off_two()")
    assert.equal(1, res:first().one) -- first() spends only this set
    assert.is_true(res:nextset())
    assert.same({"two", "three"}, res:keys())
    assert.equal(3, res:fetchone().three)
    s:execute("DROP PROCEDURE off_two")
    s:close()
  end)

  it("raises database errors as error tables, and the connection stays usable", function()
    local s = Session()
    local err = H.error_of(s.execute, s, "SELEKT :x", {x = 1})
    assert.equal("ProgrammingError", err.kind)
    assert.equal(1064, err.code)
    assert.is_true(scoped.exc.is(err, "DBAPIError"))
    assert.truthy(tostring(err):find("[SQL: SELEKT :x]", 1, true))
    assert.equal("ArgumentError", H.error_of(s.execute, s, "SELECT :missing", {}).kind)
    assert.equal(5, s:scalar("SELECT 5"))
    s:close()
    assert.equal(0, core.lease_count())
  end)

  it("logs through ngx.log at each line's level when the engine has no logger", function()
    local logged = {}
    fake.log = function(level, line) logged[#logged + 1] = {level, line} end
    local e = scoped.create_engine(H.url, {echo = true, pool_leak_threshold = 0.01})
    glue.attach(e)
    local c = e:connect()
    c:execute("SELECT 1")
    H.sleep(0.05)
    e:check_leaks() -- a leak report: a warning
    c:close()
    e:dispose()
    fake.log = function() end
    local info, warn = 0, 0
    for _, l in ipairs(logged) do
      if l[1] == fake.INFO then info = info + 1 elseif l[1] == fake.WARN then warn = warn + 1 end
      if l[2]:find("^SELECT 1") then assert.equal(fake.INFO, l[1]) end
    end
    assert.truthy(info >= 3, "echo's lines at INFO") -- checkout, SELECT 1, returned
    assert.equal(1, warn)
    -- an engine with a logger of its own keeps it
    local mine = {}
    e = scoped.create_engine(H.url, {echo = true, logger = function(level) mine[#mine + 1] = level end})
    glue.attach(e)
    e:connect():close()
    e:dispose()
    assert.equal("info", mine[1])
  end)

  it("executemany goes through the thread too", function()
    local s = Session()
    s:execute("CREATE TEMPORARY TABLE off_m (v INT)")
    local res = s:executemany("INSERT INTO off_m (v) VALUES (:v)", {{v = 1}, {v = 2}, {v = 3}})
    assert.equal(3, res.rowcount)
    assert.equal(6, s:scalar("SELECT CAST(SUM(v) AS SIGNED) FROM off_m"))
    s:close()
  end)
end)

describe("scoped.ngx io_wait outside nginx (stand-in ngx)", function()
  it("the shim does not load: attach installs no io_wait, statements run as before", function()
    package.loaded["scoped.ngx"] = nil
    rawset(_G, "ngx", {get_phase = function() return "content" end, sleep = function() end,
                       log = function() end, INFO = 7, WARN = 5, ERR = 4})
    local glue = require "scoped.ngx"
    local ok, why = glue.io_wait_status()
    local hook = glue.io_wait_hook()
    local engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_wait = function() end})
    glue.attach(engine)
    rawset(_G, "ngx", nil)
    package.loaded["scoped.ngx"] = nil
    assert.is_false(ok)
    -- Lua 5.4: no FFI; LuaJIT: no ngx.semaphore (lua-resty-core needs ngx_lua)
    assert.matches(jit and "ngx.semaphore" or "FFI", why, 1, true)
    assert.is_nil(hook)
    assert.falsy(rawget(engine, "_io_wait"))
    local c = engine:connect()
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
    engine:dispose()
  end)
end)
