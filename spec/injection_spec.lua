-- Bound values under every sql_mode and charset (issue 17, findings 1, 2, 7):
-- no value can leave its literal whatever the session's sql_mode says or
-- said a statement ago (SET STATEMENT), no route to a charset in which a
-- multibyte character can end in a backslash (gbk, big5, sjis, cp932) is
-- left open, and the bind lexer reads statements as MariaDB's lexer does.
-- Each "finding" test here fails on the code before the fix (7354c91).
local scoped = require "scoped"
local H = require "helper"

local ATTACK = "\\' UNION SELECT User FROM mysql.user -- "

local function setup_victim(c)
  c:execute("DROP TABLE IF EXISTS inj_victim")
  c:execute("CREATE TABLE inj_victim (id INT PRIMARY KEY, name VARBINARY(100))")
  c:execute("INSERT INTO inj_victim VALUES (1, 'alice')")
end

-- rows the lookup of v returns, or the error it raised
local function scalar(c, sql, params)
  return c:execute(sql, params):scalar()
end

local function lookup(c, v)
  local ok, r = pcall(c.execute, c, "SELECT name FROM inj_victim WHERE name = :v", {v = v})
  if not ok then return nil, r end
  return r:all()
end

describe("finding 1: SET STATEMENT leaves the server's NO_BACKSLASH_ESCAPES flag stale", function()
  local c
  before_each(function() c = H.raw(); setup_victim(c) end)
  after_each(function()
    c:execute("SET SESSION sql_mode = DEFAULT")
    c:execute("DROP TABLE IF EXISTS inj_victim")
    c:close()
  end)

  it("a bound \\' UNION SELECT ... FROM mysql.user -- after SET STATEMENT sql_mode='NO_BACKSLASH_ESCAPES' FOR SELECT 1 stays a value", function()
    c:execute("SET STATEMENT sql_mode='NO_BACKSLASH_ESCAPES' FOR SELECT 1")
    local rows, err = lookup(c, ATTACK)
    assert.is_nil(err)
    assert.same({}, rows) -- before the fix: one row per account in mysql.user
    c:execute("SET STATEMENT sql_mode='NO_BACKSLASH_ESCAPES' FOR SELECT 1")
    assert.equal(ATTACK, c:execute("SELECT :v", {v = ATTACK}):scalar())
  end)

  it("the reverse: a session in NO_BACKSLASH_ESCAPES after SET STATEMENT sql_mode='' FOR INSERT ...", function()
    c:execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
    c:execute("SET STATEMENT sql_mode='' FOR INSERT INTO inj_victim VALUES (2, 'bob')")
    for _, v in ipairs({"' UNION SELECT User FROM mysql.user -- ", ATTACK}) do
      local rows, err = lookup(c, v)
      assert.is_nil(err)
      assert.same({}, rows)
      c:execute("SET STATEMENT sql_mode='' FOR SELECT 1")
    end
  end)

  it("on a pooled connection, from one request to the next", function()
    local engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
    local Session = scoped.scoped_session(scoped.sessionmaker{bind = engine})
    -- each request in its own coroutine (its own scope); a request that
    -- only reads sends no COMMIT, and no ROLLBACK either (no transaction
    -- was opened), so nothing refreshes the flag in between
    local function request(f)
      local co = coroutine.create(function()
        local a, b = f()
        Session:remove()
        return a, b
      end)
      local ok, a, b = coroutine.resume(co)
      assert(ok, a)
      return a, b
    end
    local first = request(function()
      local id = Session:execute("SELECT CONNECTION_ID()"):scalar()
      Session:execute("SET STATEMENT sql_mode='NO_BACKSLASH_ESCAPES' FOR SELECT 1")
      return id
    end)
    local n, second = request(function()
      local rows = Session:execute("SELECT name FROM inj_victim WHERE name = :v", {v = ATTACK}):all()
      return #rows, Session:execute("SELECT CONNECTION_ID()"):scalar()
    end)
    assert.equal(first, second) -- the same server session
    assert.equal(0, n)
    engine:dispose()
  end)
end)

describe("finding 2: multibyte charsets", function()
  local VALUE = "\xbf' OR 1=1 -- " -- \xbf\x5c is one gbk character: a backslash escape would be eaten

  -- v looked up on c: 0 rows, or a refusal; never the whole table
  local function assert_no_injection(c, label)
    local ok, r = pcall(c.execute, c, "SELECT COUNT(*) FROM inj_victim WHERE name = :v", {v = VALUE})
    if ok then
      assert.equal(0, r:scalar(), label .. ": the value changed the statement")
    else
      assert.equal("InterfaceError", r.kind, label .. ": " .. tostring(r))
    end
  end

  setup(function()
    local c = H.raw()
    setup_victim(c)
    c:close()
  end)
  teardown(function()
    local c = H.raw()
    c:execute("DROP TABLE IF EXISTS inj_victim")
    c:close()
  end)

  for _, route in ipairs({
    {"init_command=SET NAMES gbk", "gbk"},
    {"init_command=SET character_set_client=sjis", "sjis"},
    {"init_command=SET NAMES big5", "big5"},
  }) do
    it("are refused when the URL's " .. route[1] .. " sets one (raw_connect and the pool)", function()
      local url = H.url .. "?" .. route[1]:gsub(" ", "%%20")
      local ok, c = pcall(scoped.raw_connect, url)
      if ok then finally(function() c:close() end); assert_no_injection(c, "raw_connect") end
      assert.is_false(ok, "raw_connect accepted " .. route[2])
      assert.equal("InterfaceError", c.kind)
      assert.truthy(c.message:find("'" .. route[2] .. "'", 1, true), c.message)
      assert.truthy(c.message:find("init_command", 1, true), c.message)

      local engine = scoped.create_engine(url, {pool_size = 1, max_overflow = 0, pool_timeout = 1})
      finally(function() engine:dispose() end)
      local conn
      ok, conn = pcall(engine.connect, engine)
      if ok then finally(function() conn:close() end); assert_no_injection(conn, "pool") end
      c = conn
      assert.is_false(ok, "the pool handed out a " .. route[2] .. " connection")
      assert.equal("InterfaceError", c.kind)
      assert.equal(0, engine.pool:checkedout()) -- no slot lost
    end)
  end

  it("are refused when a connect listener runs SET NAMES big5: the connection is never handed out", function()
    local engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0, pool_timeout = 1})
    scoped.event.listen(engine, "connect", function(raw) raw:execute("SET NAMES big5") end)
    finally(function() engine:dispose() end)
    local ok, c = pcall(engine.connect, engine)
    if ok then finally(function() c:close() end); assert_no_injection(c, "listener") end
    assert.is_false(ok, "a big5 connection was handed out")
    assert.equal("InterfaceError", c.kind)
    assert.truthy(c.message:find("'big5'", 1, true), c.message)
    assert.equal(0, engine.pool:checkedout())
  end)

  for _, stmt in ipairs({"SET NAMES gbk", "SET character_set_client = cp932", "SET NAMES sjis",
      "SET CHARACTER SET big5"}) do
    it("are refused when the user runs " .. stmt .. " mid-connection: the connection is discarded", function()
      local engine = scoped.create_engine(H.url, {pool_size = 1, max_overflow = 0})
      local conn = engine:connect()
      finally(function() conn:close(); engine:dispose() end)
      local tid = conn:scalar("SELECT CONNECTION_ID()")
      local ok, err = pcall(conn.execute, conn, stmt)
      if ok then assert_no_injection(conn, stmt) end
      assert.is_false(ok, stmt .. " was accepted")
      assert.equal("InterfaceError", err.kind)
      assert.is_true(err.connection_invalidated)
      -- nothing more runs on it: the next statement asks for a rollback
      assert.equal("PendingRollbackError", H.error_of(conn.execute, conn, "SELECT :v", {v = VALUE}).kind)
      conn:rollback()
      assert.equal(0, conn:scalar("SELECT COUNT(*) FROM inj_victim WHERE name = :v", {v = VALUE}))
      assert.are_not.equal(tid, conn:scalar("SELECT CONNECTION_ID()")) -- a new connection
      assert.equal("utf8mb4", conn:scalar("SELECT @@character_set_client"))
      conn:close()
      assert.is_true(H.connection_gone(tid))
    end)
  end

  it("are refused on a raw connection too", function()
    local c = H.raw()
    finally(function() c:close() end)
    local ok, err = pcall(c.execute, c, "SET NAMES gbk")
    if ok then assert_no_injection(c, "raw") end
    assert.is_false(ok)
    assert.equal("InterfaceError", err.kind)
  end)

  it("the accepted charsets work: utf8mb4, utf8mb3, utf8, latin1, ascii, binary (URL and SET NAMES)", function()
    for _, cs in ipairs({"utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"}) do
      local c = scoped.raw_connect(H.url .. "?charset=" .. cs)
      assert.equal("it's", c:execute("SELECT :v", {v = "it's"}):scalar())
      c:execute("SET NAMES " .. cs)
      assert.equal("a\\'b", c:execute("SELECT :v", {v = "a\\'b"}):scalar())
      c:close()
    end
  end)

  describe("with a server that ignores the client's charset (--character-set-server=gbk --skip-character-set-client-handshake)", function()
    local dir, port
    setup(function()
      port, dir = H.start_server("extra-server.sh",
        "--character-set-server=gbk --skip-character-set-client-handshake")
    end)
    teardown(function() H.stop_server("extra-server.sh", dir) end)

    it("Connector/C still says utf8mb4, the server reads gbk, and no bound value changes a statement", function()
      local c = scoped.raw_connect(("mysql://root@127.0.0.1:%d/scoped_test"):format(port))
      assert.equal("gbk", scalar(c, "SELECT @@character_set_client"))
      setup_victim(c)
      c:execute("INSERT INTO inj_victim VALUES (2, 'bob')")
      for _, v in ipairs({VALUE, "\xbf\\' OR 1=1 -- ", "\xbf\x5c\x27 OR 1=1 #", "\xa1\\' OR 1=1 -- ",
          "\x81\\' UNION SELECT 'x' -- ", ATTACK}) do
        assert.equal(0, scalar(c, "SELECT COUNT(*) FROM inj_victim WHERE name = :v", {v = v}), v)
        assert.equal(0, scalar(c, "SELECT COUNT(*) FROM inj_victim WHERE name = ?", {v}), v)
        assert.equal(0, scalar(c, "SELECT COUNT(*) FROM inj_victim WHERE name IN :v", {v = {v, v}}), v)
      end
      -- a statement of the user's that gbk would read differently (a byte
      -- >= 0x80 before a backslash) asks the server, which says gbk: refused
      local err = H.error_of(c.execute, c, "SELECT '\xac\\'', :x", {x = 1})
      assert.equal("InterfaceError", err.kind)
      assert.truthy(err.message:find("'gbk'", 1, true), err.message)
      c:close()
    end)
  end)
end)

describe("finding 7: the bind lexer reads statements as MariaDB does", function()
  local c
  before_each(function() c = H.raw() end)
  after_each(function() c:close() end)

  local function nbe()
    c:execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
  end

  it("under NO_BACKSLASH_ESCAPES, a literal ending in a backslash ends there", function()
    nbe()
    local row = c:execute("SELECT 'C:\\' AS p, :x AS x, ':y' AS y", {x = "v", y = "injected"}):one()
    assert.equal("C:\\", row.p)
    assert.equal("v", row.x)
    assert.equal(":y", row.y) -- before: substituted inside the literal, unquoted
    assert.equal(1, scalar(c, "SELECT 'a_b' LIKE 'a\\_b' ESCAPE '\\' AND :t", {t = true}))
    -- and a value can never leave it: the lexer asked the server for the mode
    c:execute("SET STATEMENT sql_mode='' FOR SELECT 1")
    row = c:execute("SELECT 'C:\\' AS p, :x AS x", {x = "' OR 1=1 -- "}):one()
    assert.equal("' OR 1=1 -- ", row.x)
  end)

  it("without it, a backslash escapes (and a stale flag after SET STATEMENT does not change that)", function()
    c:execute("SET STATEMENT sql_mode='NO_BACKSLASH_ESCAPES' FOR SELECT 1")
    local row = c:execute("SELECT 'a\\', :x' AS p, :y AS y", {x = "no", y = "v"}):one()
    assert.equal("a', :x", row.p)
    assert.equal("v", row.y)
  end)

  it("--\\x7f (and -- followed by any control byte) starts a comment, as for the server", function()
    nbe()
    local t = c:execute("SELECT 1 AS a --\127 :x\n, 2 AS b", {x = "\nUNION SELECT User, 1 FROM mysql.user -- "}):all()
    assert.equal(1, #t) -- before: the value's newline ended the comment and the UNION ran
    assert.same({1, 2}, {t[1].a, t[1].b})
    for _, ctl in ipairs({"\1", "\t", "\r", "\31"}) do
      assert.equal(2, c:execute("SELECT 1 AS a --" .. ctl .. ":x ?\n, :y AS b", {y = 2}):one().b)
    end
    assert.equal(8, scalar(c, "SELECT 5--3")) -- not a comment: 5 - (-3)
  end)

  it("# comments and C comments hide placeholders", function()
    assert.equal(2, c:execute("SELECT 1 # :x ' \n, :y AS b", {y = 2}):one().b)
    assert.equal(2, c:execute("SELECT 1 /* :x ' \" */, :y AS b", {y = 2}):one().b)
  end)

  it("executable comments: /*! ... */ and /*M! ... */ are SQL when the server runs them, placeholders included", function()
    local row = c:execute("SELECT /*! :a AS a, */ /*M!100000 :b AS b, */ :c AS c", {a = 1, b = 2, c = 3}):one()
    assert.same({1, 2, 3}, {row.a, row.b, row.c}) -- before: :a and :b were sent as text
    -- a version the server does not run is a comment: nothing in it counts
    row = c:execute("SELECT /*!999999 :a AS a, */ /*!50701 :b, */ :c AS c", {c = 3}):one()
    assert.equal(1, #row)
    assert.equal(3, row.c)
    assert.equal(3, c:execute("SELECT /*!999999 /* :a */ :b, */ :c AS c", {c = 3}):one().c)
  end)

  it("backtick names, and double-quoted names under ANSI_QUOTES", function()
    assert.equal(1, c:execute("SELECT :v AS `:x ? ' \\`", {v = 1}):first()[1])
    c:execute("SET SESSION sql_mode = 'ANSI_QUOTES'")
    local row = c:execute([[SELECT 1 AS "a\", :x AS b, 'it''s' AS "c"" :y"]], {x = "v"}):one()
    assert.equal("v", row.b) -- before: "a\" read as an escaped quote, :x never bound
    assert.equal("it's", row['c" :y'])
    c:execute("SET SESSION sql_mode = DEFAULT")
    assert.equal("a\", :x", c:execute([[SELECT "a\", :x" AS s, :y AS y]], {y = 1}):one().s)
  end)
end)

describe("executemany finds VALUES with the same lexer", function()
  local c
  before_each(function()
    c = H.raw()
    c:execute("DROP TABLE IF EXISTS em_t")
    c:execute("CREATE TABLE em_t (a INT PRIMARY KEY, b VARCHAR(40))")
  end)
  after_each(function()
    c:execute("DROP TABLE IF EXISTS em_t")
    c:close()
  end)
  local function com_insert()
    return tonumber(scalar(c, "SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS WHERE VARIABLE_NAME = 'COM_INSERT'"))
  end

  it("INSERT ... VALUES (:a, :b) ON DUPLICATE KEY UPDATE b = VALUES(b) works, as one statement", function()
    local before = com_insert()
    local r = c:executemany("INSERT INTO em_t (a, b) VALUES (:a, :b) ON DUPLICATE KEY UPDATE b = VALUES(b)",
      {{a = 1, b = "x"}, {a = 2, b = "y"}, {a = 1, b = "z"}})
    assert.equal(before + 1, com_insert())
    assert.equal(4, r.rowcount) -- 1 + 1 inserted, 2 for the updated row (MySQL's counting)
    assert.same({"z", "y"}, c:execute("SELECT b FROM em_t ORDER BY a"):scalars():all())
  end)

  it("skips VALUES in comments and strings", function()
    local before = com_insert()
    c:executemany("INSERT /* VALUES (1) */ INTO em_t (a, b) -- VALUES (2)\n VALUES (:a, CONCAT('VALUES (', :b)) # VALUES (\n",
      {{a = 1, b = "p"}, {a = 2, b = "q"}})
    assert.equal(before + 1, com_insert())
    assert.same({"VALUES (p", "VALUES (q"}, c:execute("SELECT b FROM em_t ORDER BY a"):scalars():all())
  end)

  it("a bind after the tuples (ON DUPLICATE KEY UPDATE b = :c) runs once per set", function()
    c:executemany("INSERT INTO em_t (a, b) VALUES (:a, 'n') ON DUPLICATE KEY UPDATE b = :c",
      {{a = 1, c = "u1"}, {a = 1, c = "u2"}})
    assert.equal("u2", scalar(c, "SELECT b FROM em_t WHERE a = 1"))
  end)

  it("repeats several tuples, keeps a trailing ';'", function()
    local before = com_insert()
    c:executemany("INSERT INTO em_t VALUES (:a, 'one'), (:a + 100, 'two');", {{a = 1}, {a = 2}})
    assert.equal(before + 1, com_insert())
    assert.equal(4, scalar(c, "SELECT COUNT(*) FROM em_t"))
  end)
end)

describe("a table in a scalar bind slot", function()
  local c
  setup(function() c = H.raw() end)
  teardown(function() c:close() end)

  it("raises ArgumentError naming the bind for an object with __tostring or a JSON object", function()
    local obj = setmetatable({}, {__tostring = function() return "42" end})
    for _, v in ipairs({obj, {id = 1}, {1, 2, x = 3}, {[2] = "a"}, setmetatable({1}, {__index = {}})}) do
      local err = H.error_of(c.execute, c, "SELECT :thing", {thing = v}) -- before: bound as NULL
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find("'thing'", 1, true), err.message)
      err = H.error_of(c.execute, c, "SELECT ?", {v})
      assert.equal("ArgumentError", err.kind)
      assert.truthy(err.message:find("positional bind parameter 1", 1, true), err.message)
    end
  end)

  it("an array stays an IN list, with or without an empty metatable (lua-cjson's array_mt)", function()
    assert.equal("(1,2)", c:render("SELECT :v", {v = {1, 2}}):sub(8))
    assert.equal("(1,2)", c:render("SELECT :v", {v = setmetatable({1, 2}, {})}):sub(8))
    assert.equal(0, scalar(c, "SELECT 1 IN :v", {v = {}}))
  end)
end)
