local scoped = require "scoped"
local H = require "helper"

describe("binds", function()
  local c
  setup(function() c = H.raw() end)
  teardown(function() c:close() end)

  local function roundtrip(v)
    return c:execute("SELECT :v AS v", {v = v}):scalar()
  end

  it("binds :name from a table and ? from an array", function()
    assert.equal(3, c:execute("SELECT :a + :b", {a = 1, b = 2}):scalar())
    assert.equal("xy", c:execute("SELECT CONCAT(?, ?)", {"x", "y"}):scalar())
  end)

  it("round-trips integers exactly", function()
    assert.equal(0, roundtrip(0))
    assert.equal(-42, roundtrip(-42))
    assert.equal(2 ^ 53, roundtrip(2 ^ 53))
    if math.type then
      assert.equal(math.maxinteger, roundtrip(math.maxinteger))
      assert.equal(math.mininteger, roundtrip(math.mininteger))
      assert.equal("integer", math.type(roundtrip(7)))
    end
  end)

  it("round-trips floats exactly", function()
    for _, x in ipairs({0.1, 0.1 + 0.2, 1 / 3, -2.5e-300, 1.7976931348623157e308, 5e-324, 123.456}) do
      assert.equal(x, roundtrip(x))
    end
    if math.type then assert.equal("float", math.type(roundtrip(3.0))) end
  end)

  it("refuses inf and nan, naming the bind", function()
    local err = H.error_of(roundtrip, math.huge)
    assert.equal("ArgumentError", err.kind)
    assert.truthy(err.message:find("'v'", 1, true))
    assert.equal("ArgumentError", H.error_of(roundtrip, 0 / 0).kind)
  end)

  it("round-trips every byte, NUL bytes and UTF-8", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.equal(all, roundtrip(all))
    assert.equal("a\0b\0", roundtrip("a\0b\0"))
    assert.equal("héllo wörld ✓ 𝄞", roundtrip("héllo wörld ✓ 𝄞"))
    assert.equal("", roundtrip(""))
    assert.equal("'\"\\\n\r\26`", roundtrip("'\"\\\n\r\26`"))
  end)

  it("writes a value holding the end of a C comment in hex, never as text", function()
    -- a skipped /*!NNNNN ... */ ends at the first star-slash, quotes or not:
    -- a value never carries one, whatever comment it may land in
    assert.equal("SELECT _utf8mb4 X'612A2F62'", c:render("SELECT :v", {v = "a*/b"}))
    assert.equal("SELECT _utf8mb4 X'2A2F'", c:render("SELECT :v", {v = "*/"}))
    assert.equal("SELECT 'a*b/c/*'", c:render("SELECT :v", {v = "a*b/c/*"}))
    assert.equal("a*/b", roundtrip("a*/b"))
  end)

  it("stores binary data in a BLOB unchanged", function()
    c:execute("DROP TABLE IF EXISTS bind_blob")
    c:execute("CREATE TABLE bind_blob (b LONGBLOB, t TEXT CHARACTER SET utf8mb4)")
    local bytes = {}
    for i = 1, 5000 do bytes[i] = string.char((i * 7919) % 256) end
    bytes = table.concat(bytes)
    c:execute("INSERT INTO bind_blob VALUES (:b, :t)", {b = bytes, t = "ü"})
    local row = c:execute("SELECT b, t FROM bind_blob"):one()
    assert.equal(bytes, row.b)
    assert.equal("ü", row.t)
    c:execute("DROP TABLE bind_blob")
  end)

  it("binds booleans as 1 and 0, nil and scoped.null as NULL", function()
    assert.equal(1, roundtrip(true))
    assert.equal(0, roundtrip(false))
    assert.equal(scoped.null, roundtrip(scoped.null))
    assert.equal(scoped.null, c:execute("SELECT ?", {nil, n = 1}):scalar())
  end)

  it("expands an array into an IN list", function()
    assert.equal(2, c:execute("SELECT COUNT(*) FROM (SELECT 1 AS x UNION SELECT 2 UNION SELECT 3) t" ..
      " WHERE x IN :xs", {xs = {1, 3}}):scalar())
    assert.equal("(1,'a',NULL)", c:render("SELECT :v", {v = {1, "a", scoped.null}}):sub(8))
  end)

  it("renders an empty array as an always-false set, never a syntax error", function()
    local q = "SELECT COUNT(*) FROM (SELECT 1 AS x UNION SELECT 2) t WHERE x %s :xs"
    assert.equal(0, c:execute(q:format("IN"), {xs = {}}):scalar())
    assert.equal(2, c:execute(q:format("NOT IN"), {xs = {}}):scalar())
  end)

  it("leaves :name inside quotes, backticks and comments alone", function()
    local sql = "SELECT ':a', \":b\", 1 AS `:c` -- :d\n, 2 # :e\n, 3 /* :f */, :g"
    assert.equal("SELECT ':a', \":b\", 1 AS `:c` -- :d\n, 2 # :e\n, 3 /* :f */, 7", c:render(sql, {g = 7}))
    local row = c:execute(sql, {g = 7}):one()
    assert.equal(":a", row[1])
    assert.equal(7, row[6])
    assert.equal("SELECT 'it''s :x', 'a\\':y'", c:render("SELECT 'it''s :x', 'a\\':y'", {}))
  end)

  it("reads :: as a literal colon", function()
    assert.equal("SELECT '1', 5:x", c:render("SELECT '1', :v::x", {v = 5}))
    assert.equal("a:b", c:execute("SELECT CONCAT('a', '::', 'b')"):scalar():gsub("::", ":"))
    assert.equal("SELECT 1:2", c:render("SELECT 1::2", {}))
  end)

  it("does not take a:b or := as binds", function()
    assert.equal("SELECT @a := 1, x:y", c:render("SELECT @a := 1, x:y", {}))
  end)

  it("raises ArgumentError naming a missing bind", function()
    local err = H.error_of(c.execute, c, "SELECT :present, :absent", {present = 1})
    assert.equal("ArgumentError", err.kind)
    assert.equal("A value is required for bind parameter 'absent'", err.message)
    err = H.error_of(c.execute, c, "SELECT :x")
    assert.equal("A value is required for bind parameter 'x'", err.message)
    err = H.error_of(c.execute, c, "SELECT ?, ?", {1})
    assert.equal("A value is required for positional bind parameter 2", err.message)
    err = H.error_of(c.execute, c, "SELECT ?", {1, 2})
    assert.equal("ArgumentError", err.kind)
    for _, n in ipairs({0.5, -1, 2 ^ 31, 1e300, 0 / 0}) do
      err = H.error_of(c.execute, c, "SELECT ?", {1, n = n})
      assert.equal("params.n must be a whole number from 0 to 2147483647", err.message)
    end
  end)

  it("raises ArgumentError naming a bind of an unsupported type", function()
    for _, v in ipairs({print, coroutine.create(print), io.stdout}) do
      local err = H.error_of(c.execute, c, "SELECT :thing", {thing = v})
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find("'thing'", 1, true), err.message)
    end
    local err = H.error_of(c.execute, c, "SELECT :v", {v = {{1}}})
    assert.truthy(err.message:find("list inside a list", 1, true))
  end)

  it("refuses mixing :name and ?", function()
    assert.equal("ArgumentError", H.error_of(c.execute, c, "SELECT :a, ?", {a = 1}).kind)
  end)

  it("checks the parameters argument's type", function()
    assert.equal("ArgumentError", H.error_of(c.execute, c, "SELECT :a", 5).kind)
    assert.equal("ArgumentError", H.error_of(c.execute, c, 5).kind)
  end)

  it("never lets a value change the statement's structure", function()
    c:execute("DROP TABLE IF EXISTS bind_victim")
    c:execute("CREATE TABLE bind_victim (id INT)")
    c:execute("INSERT INTO bind_victim VALUES (1)")
    local attacks = {
      "' OR 1=1 -- ", "\\' OR 1=1 -- ", "'; DROP TABLE bind_victim; -- ", "\\", "\\\\'",
      "\0' OR '1'='1", "\xbf\x27 OR 1=1 -- ", "\xef\xbf\xbd' OR 1=1 #", "*/ OR 1=1 /*",
    }
    for _, a in ipairs(attacks) do
      assert.equal(0, c:execute("SELECT COUNT(*) FROM bind_victim WHERE id = :v", {v = a}):scalar())
      assert.equal(a, roundtrip(a))
    end
    assert.equal(1, c:execute("SELECT COUNT(*) FROM bind_victim"):scalar())
    c:execute("DROP TABLE bind_victim")
  end)

  it("stays safe when the server runs with NO_BACKSLASH_ESCAPES", function()
    local c2 = H.raw()
    c2:execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')")
    for _, a in ipairs({"\\' OR 1=1 -- ", "it's", "back\\slash", "\0nul"}) do
      assert.equal(a, c2:execute("SELECT :v", {v = a}):scalar())
    end
    c2:close()
  end)

  it("re-parses a statement of the same length but other text (the plan cache)", function()
    local p = {a = 1, b = 2}
    assert.equal("SELECT 1", c:render("SELECT :a", p))
    assert.equal("SELECT 2", c:render("SELECT :b", p))
    assert.equal("SELECT 2", c:render("SELECT :b", p))
    assert.equal("SELECT ':a'", c:render("SELECT ':a'", p))
    assert.equal(1, c:execute("SELECT :a", p):scalar())
  end)

  it("exec_driver_sql parses no binds", function()
    assert.equal(":x", c:exec_driver_sql("SELECT ':x'"):scalar())
    assert.equal("ProgrammingError", H.error_of(c.exec_driver_sql, c, "SELECT :x").kind)
  end)
end)
