local scoped = require "scoped"
local core = require "scoped.core"
local H = require "helper"

describe("errors", function()
  local c
  setup(function()
    c = H.raw()
    c:execute("DROP TABLE IF EXISTS err_t")
    c:execute("CREATE TABLE err_t (id INT PRIMARY KEY, name VARCHAR(3) NOT NULL)")
    c:execute("INSERT INTO err_t VALUES (1, 'a')")
  end)
  teardown(function()
    c:execute("DROP TABLE err_t")
    c:close()
  end)

  it("are tables with kind, code, sqlstate, message, statement, connection_invalidated", function()
    local err = H.error_of(c.execute, c, "INSERT INTO err_t VALUES (:id, 'b')", {id = 1})
    assert.equal("IntegrityError", err.kind)
    assert.equal(1062, err.code)
    assert.equal("23000", err.sqlstate)
    assert.equal("Duplicate entry '1' for key 'PRIMARY'", err.message)
    assert.equal("INSERT INTO err_t VALUES (:id, 'b')", err.statement)
    assert.same({id = 1}, err.params)
    assert.is_false(err.connection_invalidated)
  end)

  it("read like SQLAlchemy's in tostring", function()
    local err = H.error_of(c.execute, c, "INSERT INTO err_t VALUES (1, 'b')")
    assert.equal("(scoped.IntegrityError) (1062, \"Duplicate entry '1' for key 'PRIMARY'\")\n" ..
      "[SQL: INSERT INTO err_t VALUES (1, 'b')]", tostring(err))
  end)

  -- as mysqlclient maps them (spec/error_kinds_spec.lua compares with it)
  it("map server errors to SQLAlchemy's kinds", function()
    local cases = {
      {"SELEC 1", "ProgrammingError", 1064},
      {"SELECT * FROM no_such_table", "ProgrammingError", 1146},
      {"SELECT no_such_column FROM err_t", "OperationalError", 1054},
      {"INSERT INTO err_t VALUES (2, 'toolong')", "DataError", 1406},
      {"INSERT INTO err_t VALUES (NULL, 'x')", "OperationalError", 1048},
      {"INSERT INTO err_t (id) VALUES (5)", "IntegrityError", 1364},
      {"SELECT * FROM err_t WHERE x = (SELECT 1 UNION SELECT 2)", "OperationalError", 1054},
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(c.execute, c, case[1])
      assert.is_false(ok, case[1])
      assert.equal(case[2], err.kind, case[1])
      assert.equal(case[3], err.code, case[1])
    end
  end)

  it("follow the hierarchy in exc.is", function()
    local err = H.error_of(c.execute, c, "SELEC 1")
    assert.is_true(scoped.exc.is(err, "ProgrammingError"))
    assert.is_true(scoped.exc.is(err, "DatabaseError"))
    assert.is_true(scoped.exc.is(err, "DBAPIError"))
    assert.is_true(scoped.exc.is(err, "SQLAlchemyError"))
    assert.is_false(scoped.exc.is(err, "IntegrityError"))
    assert.is_false(scoped.exc.is("a string", "DBAPIError"))
    local closed = scoped.exc.new("ResourceClosedError", "x")
    assert.is_true(scoped.exc.is(closed, "InvalidRequestError"))
    assert.is_false(scoped.exc.is(closed, "DBAPIError"))
  end)

  it("leave the connection usable", function()
    pcall(c.execute, c, "SELEC 1")
    assert.equal(1, c:execute("SELECT 1"):scalar())
  end)

  it("ResourceClosedError on a closed connection, and close twice is fine", function()
    local c2 = H.raw()
    c2:close()
    c2:close()
    local err = H.error_of(c2.execute, c2, "SELECT 1")
    assert.equal("ResourceClosedError", err.kind)
    assert.equal("This Connection is closed", err.message)
    assert.equal("ResourceClosedError", H.error_of(c2.ping, c2).kind)
  end)

  it("OperationalError within connect_timeout when the server is down", function()
    -- a loopback port with nothing listening: find one by binding and closing
    local t0 = os.time()
    local err = H.error_of(scoped.raw_connect, "mysql://root@127.0.0.1:1/x?connect_timeout=2")
    assert.equal("OperationalError", err.kind)
    assert.equal(2002, err.code)
    assert.truthy(os.time() - t0 <= 3)
    err = H.error_of(scoped.raw_connect, "mysql://root@/x?unix_socket=/nonexistent/sock&connect_timeout=2")
    assert.equal("OperationalError", err.kind)
  end)

  it("never shows the password", function()
    local u = scoped.make_url(H.url):set({password = "Zebra-Quokka-77"})
    local err = H.error_of(scoped.raw_connect, u)
    assert.equal("OperationalError", err.kind)
    assert.equal(1045, err.code)
    assert.falsy(tostring(err):find("Zebra-Quokka-77", 1, true))
    assert.falsy(tostring(u):find("Zebra-Quokka-77", 1, true))
  end)

  it("a huge statement raises a clean error, never a crash", function()
    local c2 = H.raw()
    local max = c2:execute("SELECT @@max_allowed_packet"):scalar()
    local big = string.rep("x", max + 1024)
    local ok, err = pcall(c2.execute, c2, "SELECT LENGTH(:v)", {v = big})
    assert.is_false(ok)
    assert.is_true(scoped.exc.is(err, "DBAPIError"))
    c2:close()
    assert.equal(1, c:execute("SELECT 1"):scalar())
  end)

  it("wrong argument types raise ArgumentError, never crash", function()
    local calls = {
      function() return c.execute(nil, "SELECT 1") end,
      function() return c.execute({}, "SELECT 1") end,
      function() return c:execute(nil) end,
      function() return c:execute({}) end,
      function() return c:execute("SELECT 1", "x") end,
      function() return c.exec_driver_sql(42, "x") end,
      function() return core.connect("mysql://x") end,
      function() return core.connect({port = "x", host = {}}) end,
      function() return core.parse_url(nil) end,
      function() return scoped.raw_connect(nil) end,
      function() return c:execute("SELECT 1"):fetchmany("x") end,
      function() return c:execute("SELECT 1"):fetchmany(-1) end,
      function() return core.result_methods.fetchone(c) end,
    }
    for i, f in ipairs(calls) do
      local ok, err = pcall(f)
      assert.is_false(ok, "call " .. i)
      assert.equal("ArgumentError", type(err) == "table" and err.kind, "call " .. i .. ": " .. tostring(err))
    end
  end)

  it("refuses a charset whose escaping is unsafe", function()
    local err = H.error_of(scoped.raw_connect, H.url .. "?charset=gbk")
    assert.truthy(err.message:find("not supported", 1, true))
  end)
end)
