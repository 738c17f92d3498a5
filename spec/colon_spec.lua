-- Every public method checks its self: called with a dot (`s.execute(sql)`,
-- `engine.connect()`), it raises ArgumentError "use a colon:
-- Class:method(...)" instead of a bare Lua error from deep inside. The
-- class tables are walked, so that a method added later is covered too.
local scoped = require "scoped"
local core = require "scoped.core"
local engine_mod = require "scoped.engine"
local session_mod = require "scoped.session"
local H = require "helper"

-- the hot paths check by a field every instance has (no call more): a
-- number or a boolean as their self still gets Lua's own error there
local HOT = {
  Engine = {connect = true},
  Connection = {execute = true, close = true},
  Session = {execute = true, commit = true, rollback = true, close = true},
}

local function public_methods(class)
  local names = {}
  for k, v in pairs(class) do
    if type(k) == "string" and type(v) == "function" and k:sub(1, 1) ~= "_" then names[#names + 1] = k end
  end
  table.sort(names)
  return names
end

describe("every public method checks its self", function()
  local engine, conn, session, maker, result, tx, stx, S

  setup(function()
    engine = scoped.create_engine(H.url)
    conn = engine:connect()
    maker = scoped.sessionmaker{bind = engine}
    session = maker()
    result = conn:execute("SELECT 1 AS a")
    tx = engine:connect():begin()
    stx = maker():begin()
    S = scoped.scoped_session(maker)
  end)

  teardown(function()
    pcall(conn.close, conn)
    pcall(tx.rollback, tx)
    pcall(stx.rollback, stx)
    session:close()
    S:remove()
    engine:dispose()
  end)

  -- class name as the error says it, its method table, an instance of
  -- another class to pass as a wrong self
  local function classes()
    return {
      {"Engine", engine_mod.Engine, conn},
      {"Connection", engine_mod.Connection, engine},
      {"Transaction", engine_mod.Transaction, engine},
      {"Pool", getmetatable(engine.pool), engine},
      {"Session", session_mod.Session, engine},
      {"SessionTransaction", session_mod.SessionTransaction, engine},
      {"sessionmaker", session_mod.Sessionmaker, engine},
      {"Result", core.result_methods, engine},
      {"registry", S.registry, engine},
    }
  end

  local function check(class, name, f, bad, what)
    local ok, err = pcall(f, bad)
    assert.is_false(ok, class .. "." .. name .. "(" .. what .. ") raised nothing")
    assert.equal("table", type(err), class .. "." .. name .. "(" .. what .. "): " .. tostring(err))
    assert.equal("ArgumentError", err.kind, tostring(err))
    local want = "use a colon: " .. class .. ":" .. name .. "(...)"
    assert.equal(want, err.message:sub(1, #want), err.message)
  end

  it("Engine, Connection, Transaction, Pool, Session, SessionTransaction, sessionmaker, Result, " ..
     "a scoped_session's registry: ArgumentError naming the class and method", function()
    local n = 0
    for _, c in ipairs(classes()) do
      local class, methods, other = c[1], c[2], c[3]
      local names = public_methods(methods)
      assert.is_true(#names > 0, class)
      for _, name in ipairs(names) do
        local f = methods[name]
        local bads = {{nil, "nil"}, {"SELECT 1", "a string"}, {{}, "a table"}, {other, "another object"}}
        if not (HOT[class] and HOT[class][name]) then
          bads[#bads + 1] = {42, "a number"}
          bads[#bads + 1] = {true, "a boolean"}
        end
        for _, b in ipairs(bads) do
          check(class, name, f, b[1], b[2])
          n = n + 1
        end
      end
    end
    assert.is_true(n > 150, n .. " checks")
  end)

  it("the methods found through an instance are the checked ones", function()
    local instances = {
      {"Engine", engine}, {"Connection", conn}, {"Transaction", tx}, {"Pool", engine.pool},
      {"Session", session}, {"SessionTransaction", stx}, {"sessionmaker", maker}, {"Result", result},
      {"registry", S.registry},
    }
    for i, c in ipairs(classes()) do
      local class, obj = instances[i][1], instances[i][2]
      assert.equal(c[1], class)
      for _, name in ipairs(public_methods(c[2])) do
        check(class, name, obj[name], nil, "nil")
      end
    end
  end)

  it("the messages read well", function()
    local err = H.error_of(session.execute, "SELECT 1")
    assert.equal("use a colon: Session:execute(...) (self is a string, not a Session)", err.message)
    assert.equal("scoped.ArgumentError: use a colon: Session:execute(...) (self is a string, not a Session)",
      tostring(err))
    err = H.error_of(function() return engine.connect() end)
    assert.equal("use a colon: Engine:connect(...) (self is nil, not an Engine)", err.message)
    err = H.error_of(function() return result.fetchone() end)
    assert.equal("use a colon: Result:fetchone(...) (self is no value, not a Result)", err.message)
  end)

  it("the C objects' methods too (RawConnection, the C pool)", function()
    for class, methods in pairs{RawConnection = core.conn_methods, Pool = core.pool_methods} do
      for _, name in ipairs(public_methods(methods)) do
        for _, b in ipairs{{nil, "nil"}, {"SELECT 1", "a string"}, {{}, "a table"}, {42, "a number"}} do
          local ok, err = pcall(methods[name], b[1])
          assert.is_false(ok, class .. "." .. name)
          assert.equal("ArgumentError", err.kind, class .. "." .. name .. ": " .. tostring(err))
          assert.truthy(err.message:find("use a colon: " .. class .. ":", 1, true), err.message)
        end
      end
    end
  end)

  it("a scoped_session's proxies take a dot as well as a colon (SQLAlchemy's Session.execute(...))",
     function()
    for _, name in ipairs(public_methods(S)) do
      assert.is_function(S[name], name)
    end
    assert.equal(1, S.execute("SELECT 1"):scalar())
    assert.equal(1, S:execute("SELECT 1"):scalar())
    assert.equal(1, S.scalar("SELECT 1"))
    assert.equal(engine, S.get_bind())
    assert.is_true(S.in_transaction())
    S.commit()
    assert.is_false(S:in_transaction())
    S.remove()
  end)

  it("methods called with a colon still work on both paths", function()
    local e2 = scoped.create_engine(H.url, {echo = true, logger = function() end})
    for _, e in ipairs{engine, e2} do
      local c = e:connect()
      assert.equal(1, c:execute("SELECT 1"):scalar())
      c:commit()
      c:close()
      local s = scoped.sessionmaker{bind = e}()
      assert.equal(1, s:execute("SELECT 1"):scalar())
      s:commit()
      s:execute("SELECT 1")
      s:rollback()
      s:close()
    end
    e2:dispose()
  end)
end)
