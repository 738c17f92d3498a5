local scoped = require "scoped"
local H = require "helper"

describe("Result", function()
  local c
  setup(function()
    c = H.raw()
    c:execute("DROP TABLE IF EXISTS res_t")
    c:execute("CREATE TABLE res_t (id INT PRIMARY KEY, name VARCHAR(20), score DOUBLE NULL)")
    c:execute("INSERT INTO res_t VALUES (1, 'ann', 1.5), (2, 'bob', NULL), (3, 'cid', 3.25)")
  end)
  teardown(function()
    c:execute("DROP TABLE res_t")
    c:close()
  end)
  local function q() return c:execute("SELECT id, name, score FROM res_t ORDER BY id") end

  it("fetchone, fetchmany, fetchall and all", function()
    local r = q()
    assert.equal(1, r:fetchone()[1])
    local two = r:fetchmany(1)
    assert.equal(1, #two)
    assert.equal(2, two[1].id)
    assert.equal(1, #r:fetchall())
    assert.is_nil(r:fetchone())
    assert.same({}, r:fetchall())
    assert.equal(3, #q():all())
  end)

  it("first, one, one_or_none", function()
    assert.equal("ann", q():first().name)
    assert.is_nil(c:execute("SELECT * FROM res_t WHERE id = 99"):first())
    assert.equal("bob", c:execute("SELECT * FROM res_t WHERE id = 2"):one().name)
    local err = H.error_of(function() return q():one() end)
    assert.equal("MultipleResultsFound", err.kind)
    assert.equal("Multiple rows were found when exactly one was required", err.message)
    err = H.error_of(function() return c:execute("SELECT 1 FROM res_t WHERE id = 99"):one() end)
    assert.equal("NoResultFound", err.kind)
    assert.equal("No row was found when one was required", err.message)
    assert.is_true(scoped.exc.is(err, "InvalidRequestError"))
    assert.is_nil(c:execute("SELECT 1 FROM res_t WHERE id = 99"):one_or_none())
    assert.equal(1, c:execute("SELECT id FROM res_t WHERE id = 1"):one_or_none().id)
    assert.equal("MultipleResultsFound", H.error_of(function() return q():one_or_none() end).kind)
  end)

  it("scalar, scalar_one, scalars", function()
    assert.equal(1, q():scalar())
    assert.is_nil(c:execute("SELECT id FROM res_t WHERE id = 99"):scalar())
    assert.equal(scoped.null, c:execute("SELECT score FROM res_t WHERE id = 2"):scalar())
    assert.equal(3, c:execute("SELECT COUNT(*) FROM res_t"):scalar_one())
    assert.same({1, 2, 3}, q():scalars():all())
    assert.same({"ann", "bob", "cid"}, q():scalars(2):all())
    assert.same({"ann", "bob", "cid"}, q():scalars("name"):all())
    assert.equal(1, q():scalars():first())
    assert.equal(2, c:execute("SELECT id FROM res_t WHERE id = 2"):scalars():one())
  end)

  it("mappings give plain tables", function()
    local m = q():mappings():all()
    assert.same({id = 1, name = "ann", score = 1.5}, m[1])
    assert.is_nil(getmetatable(m[1]))
    assert.same({id = 3, name = "cid", score = 3.25}, c:execute("SELECT * FROM res_t WHERE id=3"):mappings():one())
    assert.equal("ann", q():mappings():first().name)
  end)

  it("keys and iter", function()
    assert.same({"id", "name", "score"}, q():keys())
    local ids = {}
    for row in q():iter() do ids[#ids + 1] = row.id end
    assert.same({1, 2, 3}, ids)
  end)

  it("rows index by position and by name, with #, _fields and _asdict", function()
    local row = q():first()
    assert.equal(1, row[1])
    assert.equal("ann", row.name)
    assert.equal(3, #row)
    assert.same({"id", "name", "score"}, row._fields)
    assert.same({id = 1, name = "ann", score = 1.5}, row:_asdict())
    assert.is_nil(row.nope)
    local nul = c:execute("SELECT * FROM res_t WHERE id = 2"):one()
    assert.equal(3, #nul)
    assert.equal(scoped.null, nul.score)
  end)

  it("rowcount, lastrowid and returns_rows", function()
    c:execute("DROP TABLE IF EXISTS res_ai")
    c:execute("CREATE TABLE res_ai (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    local r = c:execute("INSERT INTO res_ai (v) VALUES (1), (2), (3)")
    assert.equal(3, r.rowcount)
    assert.equal(1, r.lastrowid)
    assert.is_false(r.returns_rows)
    r = c:execute("INSERT INTO res_ai (v) VALUES (4)")
    assert.equal(4, r.lastrowid)
    assert.equal(2, c:execute("UPDATE res_ai SET v = 0 WHERE id <= 2").rowcount)
    local sel = q()
    assert.is_true(sel.returns_rows)
    assert.equal(3, sel.rowcount)
    sel:first() -- closes the result; its counts stay readable
    assert.equal(3, sel.rowcount)
    local err = H.error_of(function() return r:fetchone() end)
    assert.equal("ResourceClosedError", err.kind)
    c:execute("DROP TABLE res_ai")
  end)

  it("nextset walks the result sets of a CALL", function()
    c:execute("DROP PROCEDURE IF EXISTS res_two")
    c:execute("CREATE PROCEDURE res_two() BEGIN SELECT 1 AS a; SELECT 'x' AS b, 'y' AS c; END")
    local r = c:execute("CALL res_two()")
    assert.same({"a"}, r:keys())
    assert.equal(1, r:scalars():one())
    assert.is_true(r:nextset())
    assert.same({"b", "c"}, r:keys())
    assert.equal("y", r:fetchone().c)
    assert.is_false(r:nextset())
    assert.equal(5, c:execute("SELECT 5"):scalar()) -- still in sync
    c:execute("DROP PROCEDURE res_two")
  end)

  it("keeps the connection usable when a result is dropped half read", function()
    local r = c:execute("SELECT * FROM res_t")
    r:fetchone()
    r = nil -- luacheck: ignore
    assert.equal(7, c:execute("SELECT 7"):scalar())
    local r2 = c:execute("SELECT * FROM res_t")
    r2:fetchone()
    assert.equal(8, c:execute("SELECT 8"):scalar())
    assert.equal(2, #r2:fetchall()) -- and the old one still reads on
    collectgarbage()
  end)

  it("reads rows after the connection is closed", function()
    local c2 = H.raw()
    local r = c2:execute("SELECT 1 UNION SELECT 2")
    c2:close()
    assert.equal(2, #r:all())
  end)

  it("raises ResourceClosedError after close", function()
    local r = q()
    r:close()
    assert.equal("ResourceClosedError", H.error_of(r.fetchone, r).kind)
  end)

  describe("types", function()
    it("integer kinds are Lua integers, exact", function()
      local row = c:execute("SELECT CAST(127 AS SIGNED), -32768, 8388607, 2147483647," ..
        " 9223372036854775807, -9223372036854775808, YEAR('2024-01-01')"):one()
      assert.equal(127, row[1])
      assert.equal(-32768, row[2])
      assert.equal(2147483647, row[4])
      assert.equal(2024, row[7])
      if math.type then
        assert.equal(math.maxinteger, row[5])
        assert.equal(math.mininteger, row[6])
        assert.equal("integer", math.type(row[1]))
      else
        assert.equal("9223372036854775807", row[5]) -- past 2^53 under LuaJIT: a string
      end
    end)

    it("BIGINT UNSIGNED above 2^63-1 is a string", function()
      c:execute("DROP TABLE IF EXISTS res_u")
      c:execute("CREATE TABLE res_u (v BIGINT UNSIGNED)")
      c:execute("INSERT INTO res_u VALUES (18446744073709551615), (5)")
      local vals = c:execute("SELECT v FROM res_u ORDER BY v"):scalars():all()
      assert.equal(5, vals[1])
      assert.equal("18446744073709551615", vals[2])
      c:execute("DROP TABLE res_u")
    end)

    it("BIGINT UNSIGNED from 2^63 to 2^64-1 stays exact (a string), 2^63-1 an integer", function()
      -- 19 digits, so a length check alone cannot turn them into strings:
      -- only the range check on the parsed value can
      local row = c:execute("SELECT CAST(9223372036854775808 AS UNSIGNED)," ..
        " CAST(9999999999999999999 AS UNSIGNED), CAST(18446744073709551615 AS UNSIGNED)," ..
        " CAST(9223372036854775807 AS UNSIGNED)"):one()
      assert.equal("9223372036854775808", row[1])
      assert.equal("9999999999999999999", row[2])
      assert.equal("18446744073709551615", row[3])
      if math.type then
        assert.equal("integer", math.type(row[4]))
        assert.equal(math.maxinteger, row[4])
      else
        assert.equal("9223372036854775807", row[4]) -- past 2^53 under LuaJIT: exact as a string
      end
    end)

    it("LuaJIT keeps integers up to 2^53 as numbers", function()
      assert.equal(9007199254740992, c:execute("SELECT 9007199254740992"):scalar())
      if not math.type then
        assert.equal("9007199254740993", c:execute("SELECT 9007199254740993"):scalar())
      end
    end)

    it("FLOAT and DOUBLE are numbers, DECIMAL an exact string", function()
      local row = c:execute("SELECT CAST(1.5 AS FLOAT), 2.25e0, CAST('12345678901234567890.123' AS DECIMAL(30,3))"):one()
      assert.equal(1.5, row[1])
      assert.equal(2.25, row[2])
      assert.equal("12345678901234567890.123", row[3])
    end)

    it("DOUBLE columns read back every double exactly (fast path and strtod alike)", function()
      c:execute("DROP TABLE IF EXISTS res_dbl")
      c:execute("CREATE TABLE res_dbl (i INT PRIMARY KEY, d DOUBLE)")
      math.randomseed(7)
      local vals, sets = {}, {}
      for i = 1, 5000 do
        local k, v = i % 6, nil
        if k == 0 then v = math.random()
        elseif k == 1 then v = math.random(1, 1000000) / 1000
        elseif k == 2 then v = (math.random() - 0.5) * 10 ^ math.random(-300, 300)
        elseif k == 3 then v = math.random(1, 99999) / 100
        elseif k == 4 then v = 2 ^ math.random(-1070, 1020)
        else v = -math.random(1, 2 ^ 30) * 1e-7 end
        vals[i], sets[i] = v, {i = i, d = v}
      end
      c:executemany("INSERT INTO res_dbl VALUES (:i, :d)", sets)
      local got = c:execute("SELECT d FROM res_dbl ORDER BY i"):scalars():all()
      for i = 1, #vals do
        if got[i] ~= vals[i] then
          error(string.format("row %d: wrote %.17g, read %.17g", i, vals[i], got[i]))
        end
      end
      c:execute("DROP TABLE res_dbl")
    end)

    it("dates and times are the server's text", function()
      local row = c:execute("SELECT DATE('2024-02-29'), TIME('12:34:56'), " ..
        "CAST('2024-02-29 01:02:03' AS DATETIME), TIMESTAMP('2024-02-29 01:02:03')"):one()
      assert.same({"2024-02-29", "12:34:56", "2024-02-29 01:02:03", "2024-02-29 01:02:03"},
        {row[1], row[2], row[3], row[4]})
    end)

    it("BLOB, TEXT and JSON are strings, binary safe; NULL is scoped.null", function()
      local row = c:execute("SELECT CAST(X'00FF10' AS BINARY), 'tëxt', JSON_OBJECT('a', 1), NULL"):one()
      assert.equal("\0\255\16", row[1])
      assert.equal("tëxt", row[2])
      assert.equal('{"a": 1}', row[3])
      assert.equal(scoped.null, row[4])
    end)
  end)

  -- Rows are decoded at execute time (csrc/lua/lresult.c): these pin down what
  -- that design promises.
  describe("decoded at execute time", function()
    it("keeps its rows after the connection went back to the pool and served another statement", function()
      local e = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
      local conn = e:connect()
      local r = conn:execute("SELECT id, name FROM res_t ORDER BY id")
      conn:close()
      local other = e:connect()
      assert.equal(7, other:execute("SELECT 7"):scalar())
      other:close()
      local rows = r:all()
      assert.equal(3, #rows)
      assert.equal("cid", rows[3].name)
      assert.same({"id", "name"}, r:keys())
      e:dispose()
    end)

    it("all() twice gives the rows, then an empty list; keys() still answers", function()
      local r = q()
      assert.equal(3, #r:all())
      assert.same({}, r:all())
      assert.is_nil(r:fetchone())
      assert.same({"id", "name", "score"}, r:keys())
      local k = r:keys()
      k[1] = "changed" -- a copy: the shared names stay as they were
      assert.same({"id", "name", "score"}, r:keys())
    end)

    it("all() gives a plain list: its rows and nothing else, even with no rows", function()
      local rows = q():all()
      local n = 0
      for _ in pairs(rows) do n = n + 1 end
      assert.equal(3, n)
      local none = c:execute("SELECT id FROM res_t WHERE id < 0")
      assert.same({"id"}, none:keys())
      assert.is_nil(next(none:all()))
      assert.same({"id"}, none:keys())
      local r = q()
      assert.equal(2, #r:fetchmany(2))
      assert.same({"id", "name", "score"}, r:keys())
      assert.equal(1, #r:all())
      assert.is_nil(r:first())
    end)

    it("rows of the same columns share a metatable; other columns get their own", function()
      local a = c:execute("SELECT 1 AS x, 2 AS y"):first()
      local b = c:execute("SELECT 3 AS x, 4 AS y"):first()
      local d = c:execute("SELECT 5 AS x, 6 AS z"):first()
      assert.equal(getmetatable(a), getmetatable(b))
      assert.are_not.equal(getmetatable(a), getmetatable(d))
      assert.equal(6, d.z)
      assert.is_nil(d.y)
    end)

    it("more column lists than the cache has slots: every row still gets its own names", function()
      -- 1500 lists on 1024 slots: many share a slot, and the names check
      -- must tell them apart (a wrong metatable would answer nil here)
      for i = 1, 1500 do
        local row = c:execute("SELECT " .. i .. " AS c" .. i .. ", 0 AS z"):first()
        assert.equal(i, row["c" .. i])
        assert.same({"c" .. i, "z"}, row._fields)
      end
      -- and names that differ only by where one ends and the next begins
      local r1 = c:execute("SELECT 1 AS ab, 2 AS c"):first()
      local r2 = c:execute("SELECT 1 AS a, 2 AS bc"):first()
      assert.equal(2, r1.c)
      assert.equal(2, r2.bc)
      assert.is_nil(r2.c)
    end)

    it("an error the server sends after some rows is raised, and the connection stays usable", function()
      c:execute("DROP FUNCTION IF EXISTS res_boom")
      c:execute([[CREATE FUNCTION res_boom(x INT) RETURNS INT DETERMINISTIC
        BEGIN
          IF x > 3 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom at four'; END IF;
          RETURN x;
        END]])
      local err = H.error_of(c.execute, c, "SELECT res_boom(seq) AS v FROM seq_1_to_10")
      assert.truthy(tostring(err):find("boom at four", 1, true))
      assert.equal(1, c:execute("SELECT 1"):scalar())
      c:execute("DROP FUNCTION res_boom")
    end)
  end)
end)

-- The offload path (scoped/ngx.lua) gets its rows from a pool thread as
-- plain tables; core.result_from_tables makes them a Result with the same C
-- code as every other: these compare it with the Result of the same query.
describe("core.result_from_tables", function()
  local core = require "scoped.core"
  local c
  setup(function() c = H.raw() end)
  teardown(function() c:close() end)

  -- what a pool thread sends back: plain tables, no metatables
  local function plain(res)
    local sets = {}
    if res.returns_rows then
      repeat
        local rows = {}
        for i, row in ipairs(res:fetchall()) do
          local copy = {}
          for j = 1, #row do copy[j] = rawget(row, j) end
          rows[i] = copy
        end
        sets[#sets + 1] = {keys = res:keys(), rows = rows}
      until not res:nextset()
    end
    return {rowcount = res.rowcount, lastrowid = res.lastrowid, sets = sets}
  end

  local function both(sql)
    return c:execute(sql), core.result_from_tables(plain(c:execute(sql)))
  end

  it("is a Result like the server's: same metatables, names, values and counts", function()
    local direct, built = both("SELECT 1 AS a, 'x' AS a, NULL AS _fields, 2.5 AS d")
    assert.equal(getmetatable(direct), getmetatable(built))
    assert.is_true(built.returns_rows)
    assert.equal(direct.rowcount, built.rowcount)
    assert.same(direct:keys(), built:keys())
    local d, b = direct:fetchone(), built:fetchone()
    -- the same column names share one row metatable, whoever built the row
    assert.equal(getmetatable(d), getmetatable(b))
    assert.equal(1, b.a)                  -- the first of duplicate names wins
    assert.equal(scoped.null, b._fields)  -- a column named _fields shadows it
    assert.same(d:_asdict(), b:_asdict())
    assert.is_nil(built:fetchone())
    assert.same({}, built:fetchall())
  end)

  it("wider than the columns the C stack holds, and all() then keys()", function()
    local cols = {}
    for i = 1, 70 do cols[i] = i .. " AS c" .. i end
    local direct, built = both("SELECT " .. table.concat(cols, ", ") .. " UNION ALL SELECT " ..
      table.concat(cols, ", "))
    local all = built:all()
    assert.equal(2, #all)
    assert.equal(70, all[2].c70)
    assert.same(direct:keys(), built:keys())
    assert.same({}, built:fetchall())
  end)

  it("a statement without rows: counts kept, fetches raise the Result's own error", function()
    c:execute("CREATE TEMPORARY TABLE rft (id INT AUTO_INCREMENT PRIMARY KEY, v INT)")
    local built = core.result_from_tables(plain(c:execute("INSERT INTO rft (v) VALUES (1), (2)")))
    assert.is_false(built.returns_rows)
    assert.equal(2, built.rowcount)
    assert.equal(1, built.lastrowid)
    local err = H.error_of(built.fetchone, built)
    assert.equal("ResourceClosedError", err.kind)
    assert.equal("This result object does not return rows. It has been closed automatically.",
      err.message)
    local rows = core.result_from_tables(plain(c:execute("SELECT v FROM rft ORDER BY v")))
    rows:close()
    assert.equal("This result object is closed.", H.error_of(rows.fetchall, rows).message)
    c:execute("DROP TEMPORARY TABLE rft")
  end)

  it("keeps several result sets (a CALL), each with its own names", function()
    c:execute("DROP PROCEDURE IF EXISTS rft_two")
    c:execute("CREATE PROCEDURE rft_two() BEGIN SELECT 1 AS one; SELECT 2 AS two, 3 AS three; END")
    local built = core.result_from_tables(plain(c:execute("CALL rft_two()")))
    assert.equal(1, built:first().one) -- spends only the first set
    assert.is_true(built:nextset())
    assert.same({"two", "three"}, built:keys())
    assert.equal(3, built:fetchone().three)
    assert.is_false(built:nextset())
    assert.is_false(built.returns_rows)
    c:execute("DROP PROCEDURE rft_two")
  end)

  it("checks what it is given", function()
    local bad = {
      {nil, "result must be a table"},
      {{rowcount = "1"}, "rowcount must be a number, got string"},
      {{lastrowid = {}}, "lastrowid must be a number, got table"},
      {{sets = 1}, "sets must be a table, got number"},
      {{sets = {1}}, "set 1 must be a table, got number"},
      {{sets = {{rows = {}}}}, "set 1: keys must be a table, got nil"},
      {{sets = {{keys = {"a", 2}, rows = {}}}}, "set 1: column name 2 must be a string, got number"},
      {{sets = {{keys = {"a"}}}}, "set 1: rows must be a table, got nil"},
      {{sets = {{keys = {"a"}, rows = {{1}, "x"}}}}, "set 1: row 2 must be a table, got string"},
    }
    for _, case in ipairs(bad) do
      local err = H.error_of(core.result_from_tables, case[1])
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find(case[2], 1, true), err.message)
    end
  end)
end)
