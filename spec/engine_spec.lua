local scoped = require "scoped"
local H = require "helper"

local function engine(opts)
  return scoped.create_engine(H.url, opts)
end

describe("create_engine", function()
  it("has SQLAlchemy's defaults and opens nothing", function()
    local before = H.server_connections()
    local e = engine()
    assert.equal("Pool size: 5  Connections in pool: 0 Current Overflow: -5 Current Checked out connections: 0",
      e.pool:status())
    assert.equal(5, e.pool:size())
    assert.equal(-5, e.pool:overflow())
    assert.equal(before, H.server_connections())
  end)

  it("refuses unknown options, naming them", function()
    local err = H.error_of(engine, {foo = 1, pool_size = 2})
    assert.equal("ArgumentError", err.kind)
    assert.equal("Invalid argument(s) 'foo' sent to create_engine()", err.message)
  end)

  it("refuses options of the wrong type or value, naming them", function()
    local cases = {
      {{pool_size = "5"}, "pool_size"}, {{pool_size = -1}, "pool_size"}, {{pool_size = 1.5}, "pool_size"},
      {{max_overflow = -2}, "max_overflow"}, {{pool_timeout = -1}, "pool_timeout"},
      {{pool_pre_ping = 1}, "pool_pre_ping"}, {{poolclass = "StaticPool"}, "poolclass"},
      {{pool_reset_on_return = "maybe"}, "pool_reset_on_return"}, {{echo = "yes"}, "echo"},
      {{isolation_level = "SOMETIMES"}, "isolation_level"}, {{connect_args = {colour = "red"}}, "colour"},
      {{pool_wait = true}, "pool_wait"}, {{logger = 1}, "logger"},
    }
    for _, case in ipairs(cases) do
      local err = H.error_of(engine, case[1])
      assert.equal("ArgumentError", err.kind, case[2])
      assert.truthy(err.message:find(case[2], 1, true), err.message)
    end
    assert.equal("ArgumentError", H.error_of(scoped.create_engine, 42).kind)
    assert.equal("ArgumentError", H.error_of(scoped.create_engine, H.url, "x").kind)
  end)

  it("masks the password in tostring", function()
    local e = scoped.create_engine("mysql://root:secret@127.0.0.1:3306/db")
    assert.equal("Engine(mysql://root:***@127.0.0.1:3306/db)", tostring(e))
    assert.equal("root", e.url.username)
  end)
end)

describe("Connection", function()
  local e
  before_each(function()
    e = engine({pool_size = 2, max_overflow = 1, pool_timeout = 0.3})
    local c = e:connect()
    c:execute("DROP TABLE IF EXISTS eng_t")
    c:execute("CREATE TABLE eng_t (id INT PRIMARY KEY) ENGINE=InnoDB")
    c:close()
  end)
  after_each(function()
    collectgarbage(); collectgarbage() -- a failed test's connection goes back, rolled back
    e:dispose()
  end)

  it("checks out on connect and back in on close", function()
    local c = e:connect()
    assert.equal(1, e.pool:checkedout())
    assert.equal("Pool size: 2  Connections in pool: 0 Current Overflow: -1 Current Checked out connections: 1",
      e.pool:status())
    c:close()
    assert.equal(0, e.pool:checkedout())
    assert.equal(1, e.pool:checkedin())
  end)

  it("reuses the same server connection", function()
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    c = e:connect()
    assert.equal(id, c:scalar("SELECT CONNECTION_ID()"))
    c:close()
  end)

  it("commits as you go; rollback undoes", function()
    local c = e:connect()
    c:execute("INSERT INTO eng_t VALUES (1)")
    assert.is_true(c:in_transaction())
    c:commit()
    assert.is_false(c:in_transaction())
    c:execute("INSERT INTO eng_t VALUES (2)")
    c:rollback()
    assert.same({1}, c:execute("SELECT id FROM eng_t"):scalars():all())
    c:close()
  end)

  it("rolls back an uncommitted transaction on close, so the next user starts clean", function()
    local c = e:connect()
    c:execute("INSERT INTO eng_t VALUES (3)")
    c:close()
    local c2 = e:connect()
    assert.is_false(c2.raw:in_transaction())
    assert.equal(0, c2:scalar("SELECT COUNT(*) FROM eng_t"))
    c2:close()
  end)

  it("skips the reset round trip when no transaction is open", function()
    -- one connection only, so every checkout below is the same server
    -- session; the server counts its ROLLBACKs in its session status
    local e1 = engine({pool_size = 1, max_overflow = 0})
    local function rollbacks(c)
      return tonumber(c:scalar("SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS" ..
        " WHERE VARIABLE_NAME = 'COM_ROLLBACK'"))
    end
    local c = e1:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    local r0 = rollbacks(c)
    c:execute("INSERT INTO eng_t VALUES (8)")
    c:commit()
    c:close() -- committed: nothing to reset
    c = e1:connect()
    assert.equal(id, c:scalar("SELECT CONNECTION_ID()"))
    assert.equal(r0, rollbacks(c))
    c:execute("INSERT INTO eng_t VALUES (9)")
    c:close() -- a transaction is open: reset rolls it back
    c = e1:connect()
    assert.equal(r0 + 1, rollbacks(c))
    assert.equal(0, c:scalar("SELECT COUNT(*) FROM eng_t WHERE id = 9"))
    c:close()
    e1:dispose()
  end)

  it("pool_reset_on_return='commit' commits what comes back without a Connection's close()", function()
    -- the reset mode governs raw connections given back as they are (here:
    -- straight from the pool; also a Connection left to the garbage
    -- collector); Connection:close() rolls its own transaction back first
    local e2 = engine({pool_reset_on_return = "commit"})
    local raw = e2._cpool:checkout()
    raw:execute("INSERT INTO eng_t VALUES (4)")
    raw:close()
    assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM eng_t WHERE id = 4"):scalar())
    e2:dispose()
  end)

  it("begin() gives a Transaction; a second begin is refused", function()
    local c = e:connect()
    local tx = c:begin()
    assert.is_true(tx.is_active)
    local err = H.error_of(c.begin, c)
    assert.equal("InvalidRequestError", err.kind)
    c:execute("INSERT INTO eng_t VALUES (5)")
    tx:rollback()
    assert.is_false(tx.is_active)
    assert.equal(0, H.observer():execute("SELECT COUNT(*) FROM eng_t"):scalar())
    tx = c:begin()
    c:execute("INSERT INTO eng_t VALUES (6)")
    tx:commit()
    assert.equal(1, H.observer():execute("SELECT COUNT(*) FROM eng_t WHERE id = 6"):scalar())
    c:close()
  end)

  it("begin_nested() makes savepoints", function()
    local c = e:connect()
    c:execute("INSERT INTO eng_t VALUES (10)")
    local sp = c:begin_nested()
    c:execute("INSERT INTO eng_t VALUES (11)")
    local sp2 = c:begin_nested()
    c:execute("INSERT INTO eng_t VALUES (12)")
    sp2:rollback()
    sp:commit()
    c:commit()
    assert.same({10, 11}, c:execute("SELECT id FROM eng_t ORDER BY id"):scalars():all())
    c:close()
  end)

  it("engine:begin(fn) commits, or rolls back on error", function()
    e:begin(function(c) c:execute("INSERT INTO eng_t VALUES (20)") end)
    assert.has_error(function()
      e:begin(function(c) c:execute("INSERT INTO eng_t VALUES (21)"); error("boom") end)
    end)
    assert.same({20}, H.observer():execute("SELECT id FROM eng_t"):scalars():all())
    assert.equal(0, e.pool:checkedout())
  end)

  if _VERSION == "Lua 5.4" then
    it("works as <close> variables", function()
      local chunk = assert(load([[
        local e = ...
        do
          local c <close> = e:begin()
          c:execute("INSERT INTO eng_t VALUES (30)")
        end
        pcall(function()
          local c <close> = e:begin()
          c:execute("INSERT INTO eng_t VALUES (31)")
          error("boom")
        end)
        do
          local c <close> = e:connect()
          c:execute("INSERT INTO eng_t VALUES (32)") -- not committed: rolled back on close
        end
      ]]))
      chunk(e)
      assert.same({30}, H.observer():execute("SELECT id FROM eng_t"):scalars():all())
      assert.equal(0, e.pool:checkedout())
    end)
  end

  it("engine:begin(fn) whose connection was KILLed: OperationalError, nothing committed, the slot back", function()
    local err = H.error_of(e.begin, e, function(c)
      c:execute("INSERT INTO eng_t VALUES (50)")
      local id = c:scalar("SELECT CONNECTION_ID()")
      H.observer():execute("KILL :id", {id = id})
      for _ = 1, 100 do
        if not H.connection_alive(id) then break end
        H.sleep(0.02)
      end
    end)
    assert.equal("OperationalError", err.kind)
    assert.equal(0, e.pool:checkedout())
    assert.equal(0, H.observer():execute("SELECT COUNT(*) FROM eng_t"):scalar())
  end)

  it("raises ResourceClosedError after close", function()
    local c = e:connect()
    c:close()
    c:close()
    assert.equal("ResourceClosedError", H.error_of(c.execute, c, "SELECT 1").kind)
  end)

  it("a forgotten connection goes back to the pool when collected, reset first", function()
    do
      local c = e:connect()
      c:execute("INSERT INTO eng_t VALUES (40)")
    end
    collectgarbage(); collectgarbage()
    assert.equal(0, e.pool:checkedout())
    local c = e:connect()
    assert.equal(0, c:scalar("SELECT COUNT(*) FROM eng_t"))
    c:close()
  end)

  it("invalidate() discards the connection", function()
    local c = e:connect()
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:invalidate()
    assert.is_true(H.connection_gone(id))
    -- its transaction (autobegun by the SELECT) must be rolled back first
    assert.equal("PendingRollbackError", H.error_of(c.scalar, c, "SELECT 1").kind)
    c:rollback()
    assert.is_true(c:scalar("SELECT CONNECTION_ID()") ~= id) -- then a new one
    c:close()
  end)
end)

describe("shared engines", function()
  it("share one pool by name, and refuse the name with other options", function()
    local a = scoped.create_engine(H.url, {shared = "spec-shared", pool_size = 3})
    local b = scoped.create_engine(H.url, {shared = "spec-shared", pool_size = 3})
    local c = a:connect()
    assert.equal(1, b.pool:checkedout())
    local id = c:scalar("SELECT CONNECTION_ID()")
    c:close()
    local d = b:connect()
    assert.equal(id, d:scalar("SELECT CONNECTION_ID()"))
    d:close()
    local err = H.error_of(scoped.create_engine, H.url, {shared = "spec-shared", pool_size = 4})
    assert.equal("ArgumentError", err.kind)
    assert.truthy(err.message:find("spec-shared", 1, true))
    a:dispose()
  end)
end)
