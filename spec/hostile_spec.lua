-- The hostile-string round trip (issue 17): 6,000+ values -- every byte
-- alone and around a quote and a backslash, invalid UTF-8, the multibyte
-- tricks (\xbf', \xbf\x5c'), comment and placeholder text -- through :name,
-- ?, IN lists and executemany, under sql_mode '', NO_BACKSLASH_ESCAPES,
-- ANSI_QUOTES and both, with each accepted charset, and right after a SET
-- STATEMENT sql_mode=... FOR ... that leaves the server's status flag
-- saying the opposite of the session's mode. Each value must come back
-- equal and each statement keep its shape (its columns, its rows). Values
-- are batched (hundreds per statement) so the whole matrix takes seconds.
local H = require "helper"

-- ---- the values ---------------------------------------------------------------
local function values()
  local list, seen = {}, {}
  local function add(v)
    if not seen[v] then
      seen[v] = true
      list[#list + 1] = v
    end
  end
  for b = 0, 255 do
    local s = string.char(b)
    for _, f in ipairs({"%s", "%s'", "'%s", "%s\\", "\\%s", "%s\\'", "\\'%s", "%s%s", "a%sb",
        "%s''", "%s\\\\", "'%s'", "%s\"", "%s`"}) do
      add((f:gsub("%%s", function() return s end)))
    end
  end
  local special = {0, 0x0a, 0x0d, 0x1a, 0x09, 0x22, 0x27, 0x5c, 0x60, 0x25, 0x5f, 0x3f, 0x3a, 0x2d,
    0x23, 0x2f, 0x2a, 0x7f, 0x80, 0xa0, 0xa1, 0xbf, 0xc0, 0xc3, 0xe2, 0xef, 0xf0, 0xff, 0x81, 0x5b}
  for _, a in ipairs(special) do
    for _, b in ipairs(special) do add(string.char(a, b)) end
  end
  for _, v in ipairs({
    "\xbf'", "\xbf\x5c'", "\xbf\x5c\x27 OR 1=1 -- ", "\xbf' OR 1=1 -- ", "\xa1\\' OR 1=1 #",
    "\x81\x5c\x27 UNION SELECT 1 -- ", "\xef\xbf\xbd' OR 1=1 #", "\xe5\x5c'", "\x8f\x5c\x5c'",
    "' OR '1'='1", "\\' UNION SELECT User FROM mysql.user -- ", "'; DROP TABLE hostile_t; -- ",
    "\\", "\\\\", "\\\\'", "''", "'''", "\\'\\'", "\0' OR '1'='1", "*/ OR 1=1 /*", "-- ", "--\127",
    "#", "/*", "*/", "/*!", "/*!50000 x */", "/*M!", ":x", "?", "::", ":name", "?,?", ":v, :w",
    "\n UNION SELECT 1 -- ", "\r\n#\n", "a\0b\0", "\26", "%", "_", "\\%", "\\_", "é", "€", "😀",
    "é'\\😀", "\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc0\x80", "\xe0\x80\x80", "\xed\xa0\x80",
    "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80", "\xfe\xff", "\x80\x80", "text with spaces  ",
    " leading", "", ("x"):rep(300), ("\\'"):rep(100), ("\xbf\x5c"):rep(50),
  }) do add(v) end
  -- random strings from the bytes that matter, deterministic
  local alphabet = {0, 0x27, 0x5c, 0x22, 0x60, 0x0a, 0x0d, 0x1a, 0x25, 0x5f, 0x3f, 0x3a, 0x2d, 0x23,
    0x2f, 0x2a, 0x7f, 0xbf, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xf0, 0x9f, 0x98, 0x80, 0xff, 0x61, 0x20}
  local seed = 4711 -- Park-Miller: exact in a double, so the same on every Lua
  local function rand(n)
    seed = (seed * 16807) % 2147483647
    return seed % n
  end
  for _ = 1, 100000 do
    if #list >= 6200 then break end
    local t = {}
    for i = 1, 1 + rand(24) do
      t[i] = string.char(rand(4) == 0 and rand(256) or alphabet[rand(#alphabet) + 1])
    end
    add(table.concat(t))
  end
  return list
end

local VALUES = values()
local BATCH = 500 -- values per statement

local function hex(s)
  return (s:gsub(".", function(c) return ("%02X"):format(c:byte()) end))
end

-- ---- the routes -------------------------------------------------------------------
-- before(c): what runs right before each statement (a SET STATEMENT, or nothing)

-- the batches, built once: SELECT :v1 AS c1, ... / SELECT ? AS c1, ... (the
-- aliases keep the column names, so the rows' metatable, the same)
local BATCHES = {}
for first = 1, #VALUES, BATCH do
  local last = math.min(first + BATCH - 1, #VALUES)
  local named, positional, params, list = {}, {}, {}, {}
  for i = first, last do
    local k = i - first + 1
    named[k] = (":v%d AS c%d"):format(i, k)
    positional[k] = ("? AS c%d"):format(k)
    params[("v%d"):format(i)] = VALUES[i]
    list[k] = VALUES[i]
  end
  BATCHES[#BATCHES + 1] = {first = first, list = list, params = params,
    named = "SELECT " .. table.concat(named, ", "), positional = "SELECT " .. table.concat(positional, ", ")}
end
local SETS = {}
for i, v in ipairs(VALUES) do SETS[i] = {id = i, v = v} end

local function compare(row, b, label, route)
  local list = b.list
  assert.equal(#list, #row, label .. ": " .. route .. ": the statement's columns changed")
  for k = 1, #list do
    if row[k] ~= list[k] then
      error(("%s: %s: value #%d %s came back as %s"):format(label, route, b.first + k - 1, hex(list[k]),
        hex(tostring(row[k]))))
    end
  end
end

local function check_selects(c, before, label)
  for _, b in ipairs(BATCHES) do
    before(c)
    local rows = c:execute(b.named, b.params):all()
    assert.equal(1, #rows, label .. ": :name: rows")
    compare(rows[1], b, label, ":name")
    before(c)
    rows = c:execute(b.positional, b.list):all()
    assert.equal(1, #rows, label .. ": ?: rows")
    compare(rows[1], b, label, "?")
  end
end

local function check_table(c, before, label)
  c:execute("DELETE FROM hostile_t")
  before(c)
  local r = c:executemany("INSERT INTO hostile_t (id, v) VALUES (:id, :v)", SETS)
  assert.equal(#VALUES, r.rowcount, label .. ": executemany rowcount")
  local rows = c:execute("SELECT id, v FROM hostile_t ORDER BY id"):all()
  assert.equal(#VALUES, #rows, label .. ": executemany stored another number of rows")
  for i, row in ipairs(rows) do
    if row.id ~= i or row.v ~= VALUES[i] then
      error(("%s: executemany: value #%d %s stored as %s"):format(label, i, hex(VALUES[i]),
        hex(tostring(row.v))))
    end
  end
  -- IN lists: exactly the ids of the values asked for
  for _, b in ipairs(BATCHES) do
    before(c)
    local ids = c:execute("SELECT id FROM hostile_t WHERE v IN :vs ORDER BY id", {vs = b.list}):all()
    assert.equal(#b.list, #ids, label .. ": IN list: rows")
    for k, row in ipairs(ids) do
      if row.id ~= b.first + k - 1 then
        error(("%s: IN list: row %d is id %s, not %d"):format(label, k, tostring(row.id), b.first + k - 1))
      end
    end
  end
end

local MODES = {"", "NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "NO_BACKSLASH_ESCAPES,ANSI_QUOTES"}
local CHARSETS = {"utf8mb4", "utf8mb3", "latin1", "ascii", "binary"}
-- under valgrind and ASan (SCOPED_SLOW=1) every mode, two charsets
if os.getenv("SCOPED_SLOW") == "1" then CHARSETS = {"utf8mb4", "latin1"} end

describe("hostile strings (" .. #VALUES .. " values)", function()
  local c
  setup(function()
    c = H.raw()
    c:execute("DROP TABLE IF EXISTS hostile_t")
    c:execute("CREATE TABLE hostile_t (id INT PRIMARY KEY, v VARBINARY(700) NOT NULL)")
  end)
  teardown(function()
    c:execute("SET NAMES utf8mb4")
    c:execute("SET SESSION sql_mode = DEFAULT")
    c:execute("DROP TABLE IF EXISTS hostile_t")
    c:close()
  end)

  it("are at least 6,000", function()
    assert.is_true(#VALUES >= 6000)
  end)

  for _, mode in ipairs(MODES) do
    -- the SET STATEMENT form that leaves the status flag saying the opposite
    local other = mode:find("NO_BACKSLASH_ESCAPES", 1, true) and "" or "NO_BACKSLASH_ESCAPES"
    local flip = ("SET STATEMENT sql_mode='%s' FOR SELECT 1"):format(other)
    for _, cs in ipairs(CHARSETS) do
      it(("come back equal under sql_mode '%s', charset %s, plain and after %s"):format(mode, cs, flip), function()
        c:execute(("SET SESSION sql_mode = '%s'"):format(mode))
        c:execute("SET NAMES " .. cs)
        for _, before in ipairs({
          {function() end, "plain"},
          {function(conn) conn:exec_driver_sql(flip) end, flip},
        }) do
          local label = ("sql_mode '%s', %s, %s"):format(mode, cs, before[2])
          check_selects(c, before[1], label)
          check_table(c, before[1], label)
        end
      end)
    end
  end

  it("come back equal with the charset given in the URL (utf8mb3, latin1, ascii, binary)", function()
    for _, cs in ipairs({"utf8mb3", "latin1", "ascii", "binary"}) do
      local c2 = require("scoped").raw_connect(H.url .. "?charset=" .. cs)
      c2:execute("SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES'")
      check_selects(c2, function(conn) conn:exec_driver_sql("SET STATEMENT sql_mode='' FOR SELECT 1") end,
        "URL charset " .. cs)
      c2:close()
    end
  end)
end)
