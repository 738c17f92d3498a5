-- SQLAlchemy's statement events (scoped/event.lua): before_execute,
-- after_execute, handle_error, on a Connection and on the Sessions of the
-- engine; and their absence costing nothing.
local scoped = require "scoped"
local H = require "helper"

describe("statement events", function()
  local engine, seen
  before_each(function()
    engine = scoped.create_engine(H.url, {pool_size = 1})
    seen = {}
  end)
  after_each(function() engine:dispose() end)

  local function record(name)
    scoped.event.listen(engine, name, function(...)
      seen[#seen + 1] = {name, select("#", ...), ...}
    end)
  end

  it("before_execute and after_execute wrap every statement of a Connection", function()
    record("before_execute")
    record("after_execute")
    local c = engine:connect()
    local params = {x = 41}
    local res = c:execute("SELECT :x + 1 AS v", params)
    assert.equal(42, res:scalar())
    assert.equal(2, #seen)
    local before, after = seen[1], seen[2]
    assert.equal("before_execute", before[1])
    assert.equal(c, before[3])
    assert.equal("SELECT :x + 1 AS v", before[4])
    assert.equal(params, before[5])
    assert.equal("after_execute", after[1])
    assert.equal(5, after[2]) -- conn, statement, params, result, seconds
    assert.equal(c, after[3])
    assert.equal(res, after[6])
    assert.truthy(after[7] >= 0 and after[7] < 5)
    c:exec_driver_sql("DO 1")
    c:executemany("SELECT :a", {{a = 1}, {a = 2}})
    assert.equal(6, #seen)
    assert.equal("DO 1", seen[3][4])
    c:close()
  end)

  it("times the statement", function()
    record("after_execute")
    local c = engine:connect()
    c:execute("SELECT SLEEP(0.2)")
    assert.truthy(seen[1][7] >= 0.19, seen[1][7])
    c:close()
  end)

  it("fire for a Session's statements, which the events take off the fast path", function()
    local Session = scoped.sessionmaker{bind = engine}
    local s = Session()
    s:execute("SELECT 1") -- on the fast path: a raw connection
    record("before_cursor_execute") -- SQLAlchemy's cursor-level spelling: the same list
    s:execute("SELECT 2")
    assert.equal(1, #seen)
    assert.equal("SELECT 2", seen[1][4])
    assert.equal(s:connection(), seen[1][3]) -- the Connection the session now runs on
    s:commit()
    local scoped_s = scoped.scoped_session(Session)
    scoped_s:execute("SELECT 3")
    assert.equal("SELECT 3", seen[2][4])
    scoped_s:remove()
  end)

  it("handle_error gets the error, which is raised; a listener may raise its own", function()
    record("handle_error")
    record("after_execute")
    local c = engine:connect()
    local err = H.error_of(c.execute, c, "SELEKT 1")
    assert.equal(1064, err.code)
    assert.equal(1, #seen)
    assert.equal("handle_error", seen[1][1])
    assert.equal(c, seen[1][3])
    assert.equal(err, seen[1][4])
    c:rollback()
    scoped.event.listen(engine, "handle_error", function(_, e)
      scoped.exc.raise("InvalidRequestError", "wrapped: %s", tostring(e.code))
    end)
    local wrapped = H.error_of(c.execute, c, "SELEKT 1")
    assert.equal("InvalidRequestError", wrapped.kind)
    assert.equal("wrapped: 1064", wrapped.message)
    -- the connection goes on: the failed statement's transaction rolled back
    c:rollback()
    assert.equal(1, c:scalar("SELECT 1"))
    c:close()
    assert.equal(0, engine.pool:checkedout())
  end)

  it("a before_execute listener that raises stops the statement", function()
    scoped.event.listen(engine, "before_execute", function() error("not now", 0) end)
    local c = engine:connect()
    assert.equal("not now", H.error_of(c.execute, c, "INSERT INTO no_such_table VALUES (1)"))
    c:close()
  end)

  it("remove and contains know the aliases", function()
    local f = function() end
    scoped.event.listen(engine, "after_cursor_execute", f)
    assert.is_true(scoped.event.contains(engine, "after_execute", f))
    scoped.event.remove(engine, "after_execute", f)
    assert.is_false(scoped.event.contains(engine, "after_cursor_execute", f))
  end)

  it("an engine nobody listens to keeps the fast path", function()
    assert.is_true(engine._fast)
    record("checkout") -- a pool event: statements stay as they were
    local c = engine:connect()
    c:execute("SELECT 1")
    c:close()
    assert.equal(1, #seen)
    assert.equal("checkout", seen[1][1])
  end)
end)
